"""Settings from the environment (PROTOCOL §10): defaults, Redis selection, unsafe combinations.

Each case imports the settings in a fresh interpreter, exactly as a server process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
from django.conf import settings
import django
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "db": settings.DATABASES["default"]["ENGINE"],
    "heartbeat": settings.WEBSOCKET_HEARTBEAT_INTERVAL,
    "cleanup": settings.WEBSOCKET_CLEANUP_INTERVAL,
    "timeout": settings.WEBSOCKET_CONNECTION_TIMEOUT,
    "revalidate": settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL,
    "max_bytes": settings.WEBSOCKET_MAX_MESSAGE_BYTES,
    "rate": settings.WEBSOCKET_RATE_LIMIT,
    "chat_rate": settings.CHAT_RATE_LIMIT,
    "combat_timeout": settings.COMBAT_TURN_TIMEOUT,
    "radius": settings.WORLD_NEARBY_RADIUS,
    "step": settings.WORLD_MAX_STEP,
    "access": settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds(),
    "instance": settings.INSTANCE_ID,
    "origins": settings.WEBSOCKET_ALLOWED_ORIGINS,
}))
"""


def load(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS", "DATABASE_URL"))}
    for name in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "INSTANCE_ID"):
        clean.pop(name, None)
    clean.update({"DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base", **env})
    return subprocess.run(
        [sys.executable, "-c", PROBE], check=False, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_defaults_of_the_protocol_with_no_environment_but_debug():
    result = load({"DEBUG": "true"})
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["layer"] == "realtime.layers.EmbeddedChannelLayer"  # in memory, no Redis
    assert values["db"] == "django.db.backends.sqlite3"
    assert (values["heartbeat"], values["cleanup"], values["timeout"], values["revalidate"]) == (30, 60, 120, 60)
    assert (values["max_bytes"], values["rate"], values["chat_rate"]) == (65536, "20/40", 20)
    assert (values["combat_timeout"], values["radius"], values["step"]) == (30, 100, 50)
    assert values["origins"] == []
    assert ":" in values["instance"]  # host:pid


def test_every_duration_accepts_fractions_and_redis_selects_channels_redis():
    result = load(
        {
            "DEBUG": "true",
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "WEBSOCKET_HEARTBEAT_INTERVAL": "0.25",
            "WEBSOCKET_CLEANUP_INTERVAL": "0.5",
            "COMBAT_TURN_TIMEOUT": "1.5",
            "JWT_ACCESS_TOKEN_LIFETIME": "2.5",
            "WEBSOCKET_ALLOWED_ORIGINS": "https://a.example,https://b.example",
            "INSTANCE_ID": "blue-1",
        }
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert (values["heartbeat"], values["cleanup"], values["combat_timeout"], values["access"]) == (0.25, 0.5, 1.5, 2.5)
    assert values["origins"] == ["https://a.example", "https://b.example"]
    assert values["instance"] == "blue-1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "false", "ALLOWED_HOSTS": "game.example"}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "too-short", "ALLOWED_HOSTS": "game.example"}, "SECRET_KEY is too short"),
        ({"SECRET_KEY": "x" * 50}, "ALLOWED_HOSTS is empty"),
        ({"DEBUG": "true", "REDIS_SENTINELS": "h1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"DEBUG": "true", "REDIS_SENTINELS": "h1"}, "host:port"),
    ],
)
def test_unsafe_or_broken_combinations_refuse_to_start_with_a_clear_message(env, message):
    result = load(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_production_settings_start_with_a_key_and_hosts():
    result = load({"SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "game.example"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is False
