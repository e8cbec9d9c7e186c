"""The deployment files and the operations guide stay in step with the code.

Docker is not needed: the compose file is checked structurally (with PyYAML when present,
otherwise with line-level checks of the same facts), and every setting the code reads must be
documented and configurable.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from tests.support.cluster import ROOT, ServerProcess, free_port, wait_for_port

SETTING_READ = re.compile(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"|ENVIRON\.get\("([A-Z][A-Z0-9_]+)"\)')
# Chosen per deployment rather than given a value in the compose file.
NOT_IN_COMPOSE = {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"}
NOT_IN_COMPOSE |= {"SQLITE_BUSY_TIMEOUT"}  # SQLite only; the compose file runs PostgreSQL


def read(path: str) -> str:
    return (ROOT / path).read_text()


def settings_read_by_the_code() -> set[str]:
    names = set()
    for path in ("rpgrealtime/settings/base.py", "rpgrealtime/redis_config.py"):
        for match in SETTING_READ.finditer(read(path)):
            names.add(match.group(1) or match.group(2))
    return names


def compose_services(text: str) -> dict[str, str]:
    """{service name: its block of lines} from the `services:` section (2-space indentation)."""
    services: dict[str, list[str]] = {}
    current = None
    in_services = False
    for line in text.splitlines():
        if re.match(r"^\S", line):
            in_services = line.startswith("services:")
            current = None
            continue
        if in_services and (match := re.match(r"^  ([a-z0-9_-]+):\s*$", line)):
            current = match.group(1)
            services[current] = []
        elif in_services and current:
            services[current].append(line)
    return {name: "\n".join(lines) for name, lines in services.items()}


def test_the_code_reads_the_settings_we_expect():
    names = settings_read_by_the_code()
    assert {"SECRET_KEY", "REDIS_URL", "WEBSOCKET_HEARTBEAT_INTERVAL", "REDIS_SENTINEL_PASSWORD"} <= names


def test_every_setting_is_documented():
    guide = read("docs/operations.md")
    missing = sorted(name for name in settings_read_by_the_code() if f"`{name}`" not in guide)
    assert not missing, f"document these in docs/operations.md: {missing}"


def test_every_setting_can_be_set_in_the_compose_file():
    compose = read("docker-compose.yml")
    missing = sorted(
        name for name in settings_read_by_the_code() - NOT_IN_COMPOSE if not re.search(rf"^\s+{name}:", compose, re.M)
    )
    assert not missing, f"add these to x-app-environment in docker-compose.yml: {missing}"


def test_compose_describes_a_production_like_deployment():
    text = read("docker-compose.yml")
    assert "\t" not in text
    services = compose_services(text)
    assert {"postgres", "redis", "migrate", "app1", "app2", "nginx"} <= set(services)
    assert '"manage.py", "migrate"' in services["migrate"] and 'restart: "no"' in services["migrate"]
    for app in ("app1", "app2"):
        block = services[app]
        assert "<<: *app" in block and f"INSTANCE_ID: {app}" in block
    anchor = text[text.index("x-app: &app") : text.index("services:")]
    assert "build: ." in anchor and "stop_grace_period: 30s" in anchor
    assert "/api/v1/websocket/health" in anchor and "service_completed_successfully" in anchor
    for service in ("postgres", "redis", "nginx"):
        assert "healthcheck:" in services[service], service
    assert "./deploy/nginx.conf:/etc/nginx/templates/nginx.conf.template:ro" in services["nginx"]
    assert "REDIS_URL: ${REDIS_URL:-redis://redis:6379/0}" in text and "@postgres:5432/" in text


def test_compose_parses_when_pyyaml_is_available():
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(read("docker-compose.yml"))
    services = data["services"]
    for app in ("app1", "app2"):
        service = services[app]
        assert service["environment"]["INSTANCE_ID"] == app
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["healthcheck"]["test"][0] == "CMD"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_nginx_balances_websockets_over_every_instance():
    conf = read("deploy/nginx.conf")
    body = re.sub(r"#[^\n]*", "", conf)
    assert body.count("{") == body.count("}")
    for directive in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_http_version 1.1;",
        "least_conn;",
        "proxy_read_timeout 90s;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
    ):
        assert directive in body, directive
    upstreams = set(re.findall(r"server (app\d+):8000", body))
    apps = {name for name in compose_services(read("docker-compose.yml")) if re.fullmatch(r"app\d+", name)}
    assert upstreams == apps
    # The proxy's read timeout must outlast the server's heartbeat interval (default 30 s).
    assert int(re.search(r"proxy_read_timeout (\d+)s;", body).group(1)) > 30


def test_dockerfile_runs_daphne_and_drains_on_sigterm():
    dockerfile = read("Dockerfile")
    assert "STOPSIGNAL SIGTERM" in dockerfile and "HEALTHCHECK" in dockerfile
    assert '"daphne"' in dockerfile and '"--proxy-headers"' in dockerfile
    assert "rpgrealtime.asgi:application" in dockerfile and "USER " in dockerfile
    marker = "# Tests and tooling"
    assert marker in read("requirements.txt"), "the Dockerfile strips test tools from this marker on"


# --- the compose file's variables, interpolated as Compose does --------------------------------

_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])((?:[^{}]|\{[^{}]*\}|\$\{(?:[^{}]|\{[^{}]*\})*\})*))?\}")


class MissingVariable(Exception):
    """A `${NAME:?message}` whose variable is unset or empty."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation for what docker-compose.yml uses: ${X}, ${X:-default} (nested),
    ${X:?error} and $$ for a literal dollar."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if operator == ":-":
            return current if current else interpolate(argument, env)
        if operator == ":?":
            if not current:
                raise MissingVariable(f"{name}: {interpolate(argument, env)}")
            return current
        return current or ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(replace, part) for part in parts)


def compose_environment(service: str, env: dict[str, str]) -> dict[str, str]:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(read("docker-compose.yml"))["services"]
    return {name: interpolate(str(value), env) for name, value in services[service]["environment"].items()}


SHELL = {"SECRET_KEY": "k" * 10 + "Zq8-wP3_xY7" * 5, "POSTGRES_PASSWORD": "Vd7pN2kq9XwE4rTz8yHc"}


def test_interpolation_helper_reads_compose_syntax():
    assert interpolate("${A:-${B:-x}}/${C}", {"B": "b"}) == "b/"
    assert interpolate("^X$$", {}) == "^X$"
    with pytest.raises(MissingVariable, match="set it"):
        interpolate("${A:?set it}", {"A": ""})


def test_compose_requires_a_postgres_password_and_uses_it():
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        compose_environment("app1", {"SECRET_KEY": SHELL["SECRET_KEY"]})
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        compose_environment("postgres", {})
    app = compose_environment("app1", SHELL)
    assert app["DATABASE_URL"] == f"postgres://rpgrt:{SHELL['POSTGRES_PASSWORD']}@postgres:5432/rpgrt"
    assert compose_environment("postgres", SHELL)["POSTGRES_PASSWORD"] == SHELL["POSTGRES_PASSWORD"]


def test_compose_lets_every_setting_be_overridden():
    defaults = compose_environment("app1", SHELL)
    overrides = {
        name: "9"
        for name in defaults
        if name not in ("INSTANCE_ID",)  # one per service by design
    }
    overrides |= {"DATABASE_URL": "postgres://u:p@db.example:5432/game", "REDIS_URL": "redis://cache.example:6379/1"}
    overridden = compose_environment("app1", SHELL | overrides)
    stuck = sorted(name for name, value in overrides.items() if overridden[name] != value)
    assert not stuck, f"docker-compose.yml ignores these from the shell or .env: {stuck}"


def test_compose_public_host_and_ports_shape_the_defaults():
    app = compose_environment("app1", SHELL | {"PUBLIC_HOST": "game.example.com", "HTTPS_PORT": "443"})
    assert app["ALLOWED_HOSTS"].split(",")[0] == "game.example.com"
    assert app["CSRF_TRUSTED_ORIGINS"] == "https://game.example.com:443"
    assert app["BEHIND_TLS_PROXY"] == "true"
    nginx = compose_environment("nginx", SHELL | {"HTTPS_PORT": "443"})
    assert nginx["HTTPS_PORT"] == "443" and nginx["NGINX_ENVSUBST_FILTER"] == "^HTTPS_PORT$"


def test_the_compose_defaults_pass_the_deploy_check():
    """What the image's entry point runs (`manage.py check --deploy`) with the compose environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "REDIS", "WEBSOCKET_"))}
    env |= compose_environment("app1", SHELL) | {"DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_checks_its_configuration_before_starting():
    dockerfile = read("Dockerfile")
    assert 'ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]' in dockerfile
    entrypoint = read("deploy/docker-entrypoint.sh")
    assert "python manage.py check --deploy" in entrypoint and 'exec "$@"' in entrypoint
    assert (ROOT / "deploy/docker-entrypoint.sh").stat().st_mode & 0o111


def test_compose_has_an_optional_monitoring_profile():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(read("docker-compose.yml"))["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name
    assert all("profiles" not in services[name] for name in ("postgres", "redis", "migrate", "app1", "app2", "nginx"))
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("deploy/prometheus/prometheus.yml", "deploy/prometheus/rules.yml", "deploy/grafana/provisioning"):
        assert f"./{path}:" in mounts and (ROOT / path).exists(), path


# --- TLS in the bundled nginx ---------------------------------------------------------------------


def test_nginx_terminates_tls_redirects_plain_http_and_sends_hsts():
    body = re.sub(r"#[^\n]*", "", read("deploy/nginx.conf"))
    plain, tls = body.split("listen 443 ssl;")
    assert "listen 80;" in plain
    assert "return 301 https://$host:${HTTPS_PORT}$request_uri;" in plain
    assert "proxy_pass" not in plain, "nothing may be proxied over plain HTTP"
    for directive in (
        "ssl_certificate /etc/nginx/tls/cert.pem;",
        "ssl_certificate_key /etc/nginx/tls/key.pem;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        'add_header Strict-Transport-Security "max-age=31536000" always;',
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header Upgrade $http_upgrade;",
    ):
        assert directive in tls, directive
    compose = compose_services(read("docker-compose.yml"))["nginx"]
    assert "${TLS_CERT_FILE:-./deploy/tls/cert.pem}:/etc/nginx/tls/cert.pem:ro" in compose
    assert "${TLS_KEY_FILE:-./deploy/tls/key.pem}:/etc/nginx/tls/key.pem:ro" in compose
    assert '"${HTTPS_PORT:-8443}:443"' in compose


def test_no_private_key_is_committed():
    assert "/deploy/tls/" in read(".gitignore").splitlines()
    assert "deploy/tls" in read(".dockerignore").splitlines()
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    if tracked:  # a git checkout (an exported tree has nothing to check here)
        for path in tracked.splitlines():
            if path.endswith((".pem", ".key", ".crt")) or path.startswith("deploy/tls/"):
                pytest.fail(f"{path} looks like key material and is tracked by git")


def nginx_binary() -> str:
    found = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if found is None:
        pytest.fail(
            "nginx not found: install Debian's nginx package (apt-get install -y --no-install-recommends nginx; "
            "scripts/test does this when run as root).",
            pytrace=False,
        )
    return found


def test_nginx_accepts_the_configuration_with_a_generated_certificate(tmp_path):
    nginx = nginx_binary()
    tls = tmp_path / "tls"
    made = subprocess.run(
        [str(ROOT / "scripts/dev-cert")],
        env={**os.environ, "TLS_DIR": str(tls)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert (tls / "key.pem").stat().st_mode & 0o077 == 0, "the private key must be readable by its owner only"
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_for_this_machine(tls))
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-e", "stderr", "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def render_nginx_for_this_machine(tls: Path, https_port: str = "8443", upstreams: str = "127.0.0.1:8000") -> str:
    """deploy/nginx.conf as the image renders it, adapted to run outside Docker: the certificate
    from `tls`, the instances at `upstreams` (compose's service names do not resolve here), and
    without the `resolve` parameter, which Debian's nginx (older than 1.27.3) does not know."""
    text = re.sub(r"#[^\n]*", "", read("deploy/nginx.conf")).replace("${HTTPS_PORT}", https_port)
    text = text.replace("/etc/nginx/tls/", f"{tls}/")
    first, *_ = upstreams.split(",")
    text = re.sub(r"server app1:8000 resolve", f"server {first}", text)
    text = re.sub(r"\n\s*server app\d+:8000 resolve[^\n]*", "", text)
    assert "${" not in text and not re.search(r"\bresolve\b", text)
    return text


@pytest.mark.integration
def test_clients_reach_an_instance_through_nginx_over_tls_only(tmp_path, django_db_setup, django_db_blocker):
    """deploy/nginx.conf in a real nginx in front of a real instance: wss:// and https:// work with the
    generated certificate, plain HTTP only redirects, HSTS is sent, /metrics stays private."""
    nginx = nginx_binary()
    tls = tmp_path / "tls"
    subprocess.run([str(ROOT / "scripts/dev-cert")], env={**os.environ, "TLS_DIR": str(tls)}, check=True, timeout=60)
    plain_port, tls_port = free_port(), free_port()
    with django_db_blocker.unblock():
        server = ServerProcess("tls", redis=None).start()
    proxy = None
    try:
        conf = render_nginx_for_this_machine(tls, https_port=str(tls_port), upstreams=f"127.0.0.1:{server.port}")
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{plain_port};")
        conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;")
        conf = conf.replace("worker_processes auto;", "worker_processes 1;")
        (tmp_path / "nginx.conf").write_text(conf)
        proxy = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf"), "-g",
             f"daemon off; pid {tmp_path}/nginx.pid;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for_port(tls_port)
        trusted = ssl.create_default_context(cafile=str(tls / "cert.pem"))

        # Plain HTTP answers only with a redirect to the same path over HTTPS.
        plain = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=10)
        plain.request("GET", "/api/v1/websocket/health?x=1")
        response = plain.getresponse()
        assert response.status == 301
        assert response.getheader("Location") == f"https://127.0.0.1:{tls_port}/api/v1/websocket/health?x=1"

        secure = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=10, context=trusted)
        secure.request("GET", "/api/v1/websocket/health")
        response = secure.getresponse()
        assert response.status == 200 and json.loads(response.read())["status"] == "healthy"
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000"
        secure.request("GET", "/metrics")
        response = secure.getresponse()
        response.read()
        assert response.status == 404

        async def connect() -> dict:
            async with websockets.connect(f"wss://127.0.0.1:{tls_port}/ws/game", ssl=trusted, open_timeout=10) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

        assert asyncio.run(connect())["type"] == "connection_established"
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(20)
        server.terminate()
