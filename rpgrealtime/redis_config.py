"""Redis connection settings from the environment: a URL, or Sentinel for high availability."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from rpgrealtime.env import Env

# A hung Redis must fail a throttled request (which then counts locally, accounts/throttling.py),
# not hold its thread forever.
CACHE_SOCKET_TIMEOUT = 2


def redis_settings_from_env(env: Env) -> dict[str, Any] | None:
    """Return the Redis settings, or None when no Redis is configured (embedded default).

    `REDIS_URL=redis://host:6379/0` selects a single server. `REDIS_SENTINELS=h1:26379,h2:26379`
    with `REDIS_SENTINEL_MASTER=mymaster` selects Sentinel; `REDIS_PASSWORD` applies to both.
    Sentinels often run without a password while the master has one: `REDIS_SENTINEL_PASSWORD`
    (unset: same as `REDIS_PASSWORD`; set but empty: none) is what the sentinels get.
    """
    url = env.str("REDIS_URL", default="")
    sentinels_raw = env.list("REDIS_SENTINELS", default=[])
    password = env.str("REDIS_PASSWORD", default="") or None
    if not url and not sentinels_raw:
        return None
    sentinels: list[tuple[str, int]] = []
    for item in sentinels_raw:
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_SENTINELS entry {item!r} must look like host:port.")
        sentinels.append((host, int(port)))
    master = env.str("REDIS_SENTINEL_MASTER", default="")
    if sentinels and not master:
        raise ImproperlyConfigured("REDIS_SENTINELS is set: also set REDIS_SENTINEL_MASTER (the monitored name).")
    # Read directly: django-environ turns a set-but-empty value into the default.
    sentinel_password = env.ENVIRON.get("REDIS_SENTINEL_PASSWORD")
    return {
        "url": url,
        "password": password,
        "sentinels": sentinels,
        "sentinel_master": master,
        "sentinel_password": password if sentinel_password is None else (sentinel_password or None),
        "db": env.int_or_raw("REDIS_DB", default=0),
        # redis-py 8 raises "Too many connections" past the pool size instead of waiting.
        "max_connections": env.int_or_raw("REDIS_MAX_CONNECTIONS", default=500),
    }


def channel_layer_urls_from_env(env: Env) -> list[str]:
    """`CHANNEL_LAYER_REDIS_URLS`: the channel layer's own Redis servers, comma separated (none:
    the layer uses REDIS_URL or Sentinel like the shared state). Kept as written, blanks
    dropped; `manage.py check` reports an entry that does not parse (realtime/checks/)."""
    return [url.strip() for url in env.list("CHANNEL_LAYER_REDIS_URLS", default=[]) if url.strip()]


def channel_layer_hosts(redis: dict[str, Any], urls: list[str] | None = None) -> list[dict[str, Any]]:
    """The `hosts` value channels-redis expects for these settings.

    With `urls` the layer shards its channels over those servers (channels-redis hashes each
    group's channel to one of them, in this order). REDIS_PASSWORD and REDIS_MAX_CONNECTIONS
    apply to each; a password in a URL wins over REDIS_PASSWORD (redis-py's rule).
    """
    common: dict[str, Any] = {"max_connections": redis["max_connections"]}
    if redis["password"]:
        common["password"] = redis["password"]
    if urls:
        return [{"address": url, **common} for url in urls]
    if redis["sentinels"]:
        return [
            {
                "master_name": redis["sentinel_master"],
                "sentinels": redis["sentinels"],
                "sentinel_kwargs": {"password": redis["sentinel_password"]} if redis["sentinel_password"] else None,
                "db": redis["db"],
                **common,
            }
        ]
    return [{"address": redis["url"], **common}]


def cache_settings(redis: dict[str, Any] | None) -> dict[str, Any]:
    """Django's default cache: django-redis on the same Redis (URL or Sentinel), else in memory.

    Only the HTTP throttle counters live there. django-redis raises on a Redis failure (no
    IGNORE_EXCEPTIONS), so `accounts/throttling.py` can fall back to counting in the process.
    """
    if redis is None:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    options: dict[str, Any] = {
        "SOCKET_TIMEOUT": CACHE_SOCKET_TIMEOUT,
        "SOCKET_CONNECT_TIMEOUT": CACHE_SOCKET_TIMEOUT,
    }
    if redis["password"]:
        options["PASSWORD"] = redis["password"]
    if not redis["sentinels"]:
        location = redis["url"]
    else:
        # django-redis asks the sentinels for the master named in the URL's host part.
        location = f"redis://{redis['sentinel_master']}/{redis['db']}"
        options |= {
            "CLIENT_CLASS": "django_redis.client.SentinelClient",
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": redis["sentinels"],
            # What the sentinels themselves get: the same bounded timeouts, their own password.
            "SENTINEL_KWARGS": {"socket_timeout": CACHE_SOCKET_TIMEOUT, "socket_connect_timeout": CACHE_SOCKET_TIMEOUT}
            | ({"password": redis["sentinel_password"]} if redis["sentinel_password"] else {}),
        }
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": location,
        "OPTIONS": options,
        "KEY_PREFIX": "rpgrt-cache",
    }
