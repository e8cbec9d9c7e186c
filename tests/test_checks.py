"""`manage.py check` reports every bad setting by name before the server starts (realtime/checks/).

In-process cases override one setting and run the checks; subprocess cases set the environment
variable itself, as an operator would, and run `manage.py check` the way the image does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from realtime.checks import NUMBERS
from tests.support.cluster import ROOT
from tests.test_deployment import settings_read_by_the_code


def check_fails_naming(name: str, *, deploy: bool = False, fail_level: str = "ERROR", **overrides: Any) -> str:
    with override_settings(**overrides), pytest.raises(SystemCheckError) as failure:
        call_command("check", deploy=deploy, fail_level=fail_level)
    message = str(failure.value)
    assert name in message, message
    return message


def test_the_test_settings_pass_every_check():
    call_command("check")


# --- numbers: format and range, one family per kind -----------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "nan", "inf", 0, -1.5])
def test_durations_must_be_positive_numbers_of_seconds(bad):
    message = check_fails_naming("WEBSOCKET_HEARTBEAT_INTERVAL", WEBSOCKET_HEARTBEAT_INTERVAL=bad)
    assert "realtime.E001" in message and "seconds" in message


@pytest.mark.parametrize(
    "name",
    [
        "CHAT_RATE_LIMIT",
        "WORLD_MOVE_RATE_LIMIT",
        "COMBAT_START_RATE_LIMIT",
        "WEBSOCKET_MAX_CONNECTIONS_PER_USER",
        "WEBSOCKET_MAX_CONNECTIONS_PER_IP",
        "WEBSOCKET_MAX_ANONYMOUS_PER_IP",
    ],
)
def test_caps_and_limits_are_whole_numbers_where_0_disables(name):
    check_fails_naming(name, **{name: -1})
    check_fails_naming(name, **{name: "twenty"})
    with override_settings(**{name: 0}):
        call_command("check")  # 0 turns the limit off: valid


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("RECOVERY_HISTORY_SIZE", 0),
        ("RECOVERY_HISTORY_SIZE", "1.5"),
        ("RECOVERY_HISTORY_TTL", 0),
        ("WORLD_RESUME_SECONDS", -1),
        ("PARTY_MAX_SIZE", 0),
        ("ADMIN_LOGIN_FAILURE_LIMIT", 0),
        ("WEBSOCKET_MAX_MESSAGE_BYTES", 0),
        ("WEBSOCKET_SEND_BUFFER_BYTES", "1MB"),
        ("WORLD_NEARBY_RADIUS", 0),
        ("WORLD_MAX_STEP", -5),
        ("JWT_ACCESS_TOKEN_LIFETIME", "15m"),
        ("COMBAT_TURN_TIMEOUT", 0),
    ],
)
def test_sizes_lifetimes_and_game_rules_are_in_range(name, bad):
    check_fails_naming(name, **{name: bad})


def test_every_number_the_checks_know_can_fail():
    # Each entry of the table is reached: a wrong type for each is reported under its own name.
    top_level = [spec.name for spec in NUMBERS if spec.read is None]
    assert len(top_level) >= 25
    with override_settings(**dict.fromkeys(top_level, "x")), pytest.raises(SystemCheckError) as failure:
        call_command("check")
    missing = [name for name in top_level if f"{name} must be" not in str(failure.value)]
    assert not missing


def test_numbers_nested_in_other_settings_are_reported_by_their_variable(settings):
    redis = {"url": "redis://127.0.0.1:6379/0", "password": None, "sentinels": [], "db": "one", "max_connections": 0}
    message = check_fails_naming(
        "REDIS_DB",
        REDIS=redis,
        REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": -1},
    )
    assert "REDIS_MAX_CONNECTIONS" in message and "NUM_PROXIES" in message


# --- switches, rate formats, origins, Redis, logging ---------------------------------------------


def test_switches_must_be_true_or_false():
    message = check_fails_naming("WEBSOCKET_METRICS_PUBLIC", WEBSOCKET_METRICS_PUBLIC="maybe")
    assert "counts as false" in message
    check_fails_naming("BEHIND_TLS_PROXY", BEHIND_TLS_PROXY="yes please")


@pytest.mark.parametrize("bad", ["garbage", "0/5", "-3/10", "20/40/60"])
def test_websocket_rate_limit_must_be_rate_slash_burst(bad):
    check_fails_naming("WEBSOCKET_RATE_LIMIT", WEBSOCKET_RATE_LIMIT=bad)


@pytest.mark.parametrize("good", ["0", "20/40", "2.5/5", "30"])
def test_websocket_rate_limit_accepts_what_the_consumer_accepts(good):
    with override_settings(WEBSOCKET_RATE_LIMIT=good):
        call_command("check")


@pytest.mark.parametrize("bad", ["twenty/min", "20/fortnight", "20 per minute", "", "20/min/5"])
def test_http_throttle_rates_must_look_like_count_slash_period(settings, bad):
    rest = settings.REST_FRAMEWORK
    for scope, name in (
        ("auth_token", "AUTH_TOKEN_THROTTLE"),
        ("auth_register", "AUTH_REGISTER_THROTTLE"),
        ("membership", "MEMBERSHIP_THROTTLE"),
    ):
        rates = {**rest["DEFAULT_THROTTLE_RATES"], scope: bad}
        check_fails_naming(name, REST_FRAMEWORK={**rest, "DEFAULT_THROTTLE_RATES": rates})


@pytest.mark.parametrize(
    "bad", ["game.example.com", "https://game.example.com/play", "ftp://game.example.com", "https://", "https://h:x"]
)
def test_allowed_origins_are_scheme_and_host(bad):
    check_fails_naming("WEBSOCKET_ALLOWED_ORIGINS", WEBSOCKET_ALLOWED_ORIGINS=["https://ok.example", bad])


def test_allowed_origins_accept_ports_trailing_slashes_and_a_star():
    with override_settings(WEBSOCKET_ALLOWED_ORIGINS=["http://localhost:8080", "https://game.example/", "*"]):
        call_command("check")


def test_redis_url_needs_a_redis_scheme_and_hides_its_password():
    redis = {"url": "http://:hunter2hunter2@cache:6379/0", "password": None, "sentinels": [], "db": 0}
    message = check_fails_naming("REDIS_URL", REDIS={**redis, "max_connections": 500})
    assert "hunter2" not in message
    sentinels = {**redis, "url": "", "sentinels": [("s1", 70000)], "max_connections": 500}
    check_fails_naming("REDIS_SENTINELS", REDIS=sentinels)


LAYER_REDIS = {"url": "redis://redis:6379/0", "password": None, "sentinels": [], "db": 0, "max_connections": 500}


@pytest.mark.parametrize(
    "bad",
    [
        "http://layer-2:6379/0",  # not a Redis scheme
        "layer-2:6379",  # no scheme at all
        "redis://layer-2:port/0",
        "redis://layer-2:99999/0",
        "redis://[::1",  # does not even split
        "redis:///0",  # no host
        "redis://layer-2:6379/zero",
        "unix://",
    ],
)
def test_channel_layer_urls_must_each_be_a_redis_url(bad):
    message = check_fails_naming(
        "CHANNEL_LAYER_REDIS_URLS", REDIS=LAYER_REDIS, CHANNEL_LAYER_REDIS_URLS=["redis://good-shard:6379/0", bad]
    )
    assert "realtime.E009" in message and "good-shard" not in message  # only the bad entry is named


def test_channel_layer_urls_hide_passwords_refuse_duplicates_and_need_a_shared_state_redis():
    message = check_fails_naming(
        "CHANNEL_LAYER_REDIS_URLS",
        REDIS=LAYER_REDIS,
        CHANNEL_LAYER_REDIS_URLS=["redis://:hunter2hunter2@layer-1:port/0", "redis://:s3cr3t@layer-2:6379/0"] * 2,
    )
    assert "hunter2" not in message and "s3cr3t" not in message and "twice" in message
    message = check_fails_naming("CHANNEL_LAYER_REDIS_URLS", REDIS=None, CHANNEL_LAYER_REDIS_URLS=["redis://a:6379/0"])
    assert "REDIS_URL" in message


def test_channel_layer_urls_accept_redis_tls_and_socket_urls():
    urls = ["redis://:pw@layer-1:6379/0", "rediss://layer-2:6380", "unix:///run/redis/layer-3.sock"]
    with override_settings(REDIS=LAYER_REDIS, CHANNEL_LAYER_REDIS_URLS=urls):
        call_command("check")


@pytest.mark.parametrize("bad", ["fast", "10000,10", "0,10,10"])
def test_gc_threshold_is_three_thresholds_or_python(bad):
    message = check_fails_naming("GC_THRESHOLD", GC_THRESHOLD=bad)
    assert "realtime.E012" in message


def test_log_level_format_and_instance_id():
    check_fails_naming("LOG_LEVEL", LOG_LEVEL="LOUD")
    check_fails_naming("CHANNELS_REDIS_LOG_LEVEL", CHANNELS_REDIS_LOG_LEVEL="QUIET")
    check_fails_naming("LOG_FORMAT", LOG_FORMAT="xml")
    check_fails_naming("INSTANCE_ID", INSTANCE_ID="  ")


# --- relations ----------------------------------------------------------------------------------


def test_heartbeat_must_be_shorter_than_the_connection_timeout():
    message = check_fails_naming(
        "WEBSOCKET_HEARTBEAT_INTERVAL", WEBSOCKET_HEARTBEAT_INTERVAL=60, WEBSOCKET_CONNECTION_TIMEOUT=60
    )
    assert "WEBSOCKET_CONNECTION_TIMEOUT" in message and "realtime.E010" in message


def test_registry_flush_must_not_be_slower_than_cleanup():
    message = check_fails_naming(
        "WEBSOCKET_REGISTRY_FLUSH_INTERVAL", WEBSOCKET_REGISTRY_FLUSH_INTERVAL=10, WEBSOCKET_CLEANUP_INTERVAL=5
    )
    assert "realtime.E011" in message


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"WEBSOCKET_HEARTBEAT_INTERVAL": 70}, ["WEBSOCKET_CONNECTION_TIMEOUT", "WEBSOCKET_HEARTBEAT_INTERVAL"]),
        ({"WEBSOCKET_CLEANUP_INTERVAL": 600}, ["WEBSOCKET_CLEANUP_INTERVAL", "WEBSOCKET_CONNECTION_TIMEOUT"]),
        ({"WORLD_MAX_STEP": 150}, ["WORLD_MAX_STEP", "WORLD_NEARBY_RADIUS"]),
        ({"WEBSOCKET_SEND_BUFFER_BYTES": 1000}, ["WEBSOCKET_SEND_BUFFER_BYTES", "WEBSOCKET_MAX_MESSAGE_BYTES"]),
        ({"WEBSOCKET_MAX_MESSAGE_BYTES": 4 << 20, "WEBSOCKET_SEND_BUFFER_BYTES": 8 << 20}, ["1 MiB"]),
        ({"JWT_REFRESH_TOKEN_LIFETIME": 60}, ["JWT_REFRESH_TOKEN_LIFETIME", "JWT_ACCESS_TOKEN_LIFETIME"]),
    ],
)
def test_doubtful_relations_are_warnings_that_name_both_settings(overrides, names):
    with override_settings(**overrides):
        call_command("check")  # a warning alone does not stop the server
    message = check_fails_naming(names[0], fail_level="WARNING", **overrides)
    assert all(name in message for name in names), message


# --- production hazards (--deploy) --------------------------------------------------------------


def test_debug_with_public_hosts_fails_the_deploy_check_only():
    overrides = {"DEBUG": True, "ALLOWED_HOSTS": ["game.example.com", "127.0.0.1"]}
    with override_settings(**overrides):
        call_command("check")
    message = check_fails_naming("DEBUG", deploy=True, **overrides)
    assert "realtime.E101" in message and "game.example.com" in message


def test_public_metrics_wildcard_hosts_and_plain_transport_are_deploy_warnings():
    message = check_fails_naming(
        "WEBSOCKET_METRICS_PUBLIC",
        deploy=True,
        fail_level="WARNING",
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        WEBSOCKET_METRICS_PUBLIC=True,
        BEHIND_TLS_PROXY=False,
    )
    assert "realtime.W102" in message and "BEHIND_TLS_PROXY" in message


# --- the environment, as an operator sets it ------------------------------------------------------

PRODUCTION = {
    "SECRET_KEY": "k3y-" + "x7Qp9" * 12,
    "ALLOWED_HOSTS": "game.example.com,127.0.0.1",
    "BEHIND_TLS_PROXY": "true",
    "DATABASE_URL": "postgres://rpgrt:Vd7pN2kq9XwE4rTz@postgres:5432/rpgrt",
}


def manage_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "REDIS", "DATABASE_URL", "WEBSOCKET_", "PYTEST"))
        and k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "LOG_FORMAT", "LOG_LEVEL")
    }
    clean.update({"DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base", **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_bad_variable_fails_manage_py_check_instead_of_the_first_connection():
    result = manage_check({"DEBUG": "true", "WEBSOCKET_RATE_LIMIT": "garbage", "WEBSOCKET_CONNECTION_TIMEOUT": "2m"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "WEBSOCKET_RATE_LIMIT" in result.stderr and "WEBSOCKET_CONNECTION_TIMEOUT" in result.stderr


def test_a_production_environment_passes_the_deploy_check():
    result = manage_check(PRODUCTION, "--deploy")
    assert result.returncode == 0, result.stderr
    assert "realtime." not in result.stderr + result.stdout


def test_a_weak_postgres_password_fails_the_deploy_check():
    weak = {**PRODUCTION, "DATABASE_URL": "postgres://rpgrt:rpgrt@postgres:5432/rpgrt"}
    result = manage_check(weak, "--deploy")
    assert result.returncode == 1
    assert "realtime.E105" in result.stderr and "DATABASE_URL" in result.stderr
    assert manage_check(weak).returncode == 0  # only a production hazard


def test_a_bad_channel_layer_url_fails_manage_py_check_without_a_traceback():
    env = {**PRODUCTION, "REDIS_URL": "redis://redis:6379/0"}
    result = manage_check({**env, "CHANNEL_LAYER_REDIS_URLS": "redis://layer-1:6379/0,redis://[layer-2:6379/0"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "CHANNEL_LAYER_REDIS_URLS entry" in result.stderr
    good = manage_check({**env, "CHANNEL_LAYER_REDIS_URLS": "redis://layer-1:6379/0, redis://layer-2:6379/0,"})
    assert good.returncode == 0, good.stderr


def test_a_switch_that_does_not_parse_counts_as_off_and_is_reported():
    result = manage_check({**PRODUCTION, "DEBUG": "maybe"})
    assert result.returncode == 1
    assert "DEBUG must be true or false, not 'maybe'; until fixed it counts as false." in result.stderr


# Read by the settings but left to others: Django checks these itself, or the settings refuse to
# load without them, or any text is valid.
CHECKED_ELSEWHERE = {
    "SECRET_KEY": "Django's security.W009 under --deploy; the settings refuse to load without it",
    "ALLOWED_HOSTS": "Django validates hosts; the settings refuse an empty list without DEBUG",
    "CSRF_TRUSTED_ORIGINS": "Django's 4_0.E001 checks the scheme of each origin",
    "DATABASE_URL": "django-environ refuses an unknown scheme when the settings load",
    "REDIS_PASSWORD": "any text",
    "REDIS_SENTINEL_PASSWORD": "any text",
    "REDIS_SENTINEL_MASTER": "the settings refuse sentinels without it",
    "MEMBERSHIP_THROTTLE": "accounts/checks.py, next to the routes it throttles",
}


def test_every_setting_the_code_reads_is_checked():
    source = "\n".join(path.read_text() for path in sorted((ROOT / "realtime/checks").glob("*.py")))
    unchecked = sorted(
        name
        for name in settings_read_by_the_code()
        if name not in CHECKED_ELSEWHERE and not re.search(rf"\b{name}\b", source)
    )
    assert not unchecked, f"add a check for these to realtime/checks/: {unchecked}"
