"""The deployment files and the operations guide stay in step with the code.

Docker is not needed: the compose file is checked structurally (with PyYAML when present,
otherwise with line-level checks of the same facts), and every setting the code reads must be
documented and configurable.
"""

from __future__ import annotations

import re

import pytest

from tests.support.cluster import ROOT

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
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]
    assert "REDIS_URL: redis://redis:6379/0" in text and "@postgres:5432/" in text


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
