"""Redis connection settings from the environment: a URL, or Sentinel for high availability."""

from __future__ import annotations

from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured


def redis_settings_from_env(env: environ.Env) -> dict[str, Any] | None:
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
        "db": env.int("REDIS_DB", default=0),
        # redis-py 8 raises "Too many connections" past the pool size instead of waiting.
        "max_connections": env.int("REDIS_MAX_CONNECTIONS", default=500),
    }


def channel_layer_hosts(redis: dict[str, Any]) -> list[dict[str, Any]]:
    """The `hosts` value channels-redis expects for these settings."""
    common: dict[str, Any] = {"max_connections": redis["max_connections"]}
    if redis["password"]:
        common["password"] = redis["password"]
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
