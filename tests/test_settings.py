"""Settings from the environment (docs/protocol.md §10): defaults, Redis selection, unsafe combinations.

Each case imports the settings in a fresh interpreter, exactly as a server process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from channels_redis.utils import create_pool
from django_redis.cache import RedisCache
from redis.sentinel import SentinelConnectionPool

from rpgrealtime.redis_config import cache_settings, channel_layer_hosts
from tests.support.cluster import RedisServer
from tests.support.ops import SentinelServer

ROOT = Path(__file__).resolve().parents[1]
REDIS_BASE = {
    "url": "",
    "password": None,
    "sentinels": [],
    "sentinel_master": "",
    "sentinel_password": None,
    "db": 0,
    "max_connections": 500,
}

PROBE = """
import json
from django.conf import settings
import django
django.setup()
print(json.dumps({
    "debug": settings.DEBUG,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_hosts": [host.get("address") for host in settings.CHANNEL_LAYERS["default"]["CONFIG"].get("hosts", [])],
    "shared_state": (settings.REDIS or {}).get("url"),
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


def test_channel_layer_redis_urls_give_the_layer_its_own_servers_and_leave_shared_state_alone():
    result = load(
        {
            "DEBUG": "true",
            "REDIS_URL": "redis://state:6379/0",
            "CHANNEL_LAYER_REDIS_URLS": " redis://layer-1:6379/0 , redis://layer-2:6379/0,",
        }
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert values["layer_hosts"] == ["redis://layer-1:6379/0", "redis://layer-2:6379/0"]  # in order: the shards
    assert values["shared_state"] == "redis://state:6379/0"
    unset = json.loads(load({"DEBUG": "true", "REDIS_URL": "redis://state:6379/0"}).stdout)
    assert unset["layer_hosts"] == ["redis://state:6379/0"]


def test_each_layer_server_gets_the_pool_settings_and_a_password_in_its_url_wins():
    redis_settings = REDIS_BASE | {"url": "redis://state:6379/0", "password": "shared", "max_connections": 50}
    hosts = channel_layer_hosts(redis_settings, ["redis://layer-1:6379/0", "redis://:own@layer-2:6380/1"])
    pools = [create_pool(host) for host in hosts]  # what channels-redis builds; nothing connects yet
    kwargs = [pool.connection_kwargs for pool in pools]
    assert [(k["host"], k["port"], k["db"], k["password"]) for k in kwargs] == [
        ("layer-1", 6379, 0, "shared"),
        ("layer-2", 6380, 1, "own"),
    ]
    assert [pool.max_connections for pool in pools] == [50, 50]


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


# --- Django's cache (the HTTP throttle counters) on Redis and Sentinel ----------------------------


def test_cache_follows_a_single_redis_url():
    config = cache_settings(REDIS_BASE | {"url": "redis://cache:6379/2", "password": "pw"})
    assert config["BACKEND"] == "django_redis.cache.RedisCache"
    assert config["LOCATION"] == "redis://cache:6379/2"
    options = config["OPTIONS"]
    assert options["PASSWORD"] == "pw" and options["SOCKET_TIMEOUT"] == options["SOCKET_CONNECT_TIMEOUT"] == 2
    # Failures must raise, not be swallowed: accounts/throttling.py then counts in the process.
    assert not options.get("IGNORE_EXCEPTIONS")
    assert "CLIENT_CLASS" not in options


def test_cache_follows_sentinel_with_the_sentinels_own_password():
    config = cache_settings(
        REDIS_BASE
        | {"sentinels": [("s1", 26379), ("s2", 26380)], "sentinel_master": "mymaster", "db": 3}
        | {"password": "master-secret", "sentinel_password": "sentinel-secret"}
    )
    assert config["LOCATION"] == "redis://mymaster/3"
    options = config["OPTIONS"]
    assert options["CLIENT_CLASS"] == "django_redis.client.SentinelClient"
    assert options["CONNECTION_FACTORY"] == "django_redis.pool.SentinelConnectionFactory"
    assert options["SENTINELS"] == [("s1", 26379), ("s2", 26380)] and options["PASSWORD"] == "master-secret"
    assert options["SENTINEL_KWARGS"]["password"] == "sentinel-secret"
    # What django-redis builds from it: a pool that asks the sentinels for "mymaster" (no connection yet).

    client = RedisCache(config["LOCATION"], {"OPTIONS": options}).client.get_client(write=True)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "master-secret" and pool.connection_kwargs["db"] == 3
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"], sentinel["password"]) == ("s1", 26379, "sentinel-secret")


def test_cache_sentinels_without_a_password_get_none():
    config = cache_settings(REDIS_BASE | {"sentinels": [("s1", 26379)], "sentinel_master": "m", "password": "a"})
    assert "password" not in config["OPTIONS"]["SENTINEL_KWARGS"]


def test_cache_is_in_memory_without_redis():
    assert cache_settings(None)["BACKEND"].endswith("LocMemCache")


@pytest.mark.integration
def test_throttle_counters_are_shared_through_a_real_sentinel():

    master = RedisServer().start()
    sentinel = SentinelServer(master.port).start()
    try:
        config = cache_settings(
            REDIS_BASE | {"sentinels": [("127.0.0.1", sentinel.port)], "sentinel_master": SentinelServer.MASTER}
        )
        # Two instances' caches, each built from the same settings, count into one key.
        first, second = (RedisCache(config["LOCATION"], {"OPTIONS": dict(config["OPTIONS"])}) for _ in range(2))
        first.set("throttle_auth_token_127.0.0.1", [1.0], 60)
        assert second.get("throttle_auth_token_127.0.0.1") == [1.0]
        assert redis.Redis(port=master.port).exists(":1:throttle_auth_token_127.0.0.1")
    finally:
        sentinel.stop()
        master.stop()
