"""Checks of the Redis settings: the shared-state URL, sentinels and the channel layer's shards."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from redis.connection import parse_url

from realtime.checks.values import TAG
from realtime.shards import MAX_SHARDS


@register(TAG)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The Redis URL has a scheme redis-py knows; sentinel ports are real ports."""
    redis = getattr(settings, "REDIS", None)
    if not redis:
        return []
    messages: list[CheckMessage] = []
    url = redis.get("url") or ""
    if url and not redis.get("sentinels") and _redis_url_problem(url) is not None:
        messages.append(
            Error(
                f"REDIS_URL must be redis://host:port/db (or rediss:// for TLS, unix:///path.sock), "
                f"not {_without_password(url)!r}.",
                hint="Set REDIS_URL=redis://redis:6379/0, or unset it for the embedded default (one process).",
                id="realtime.E006",
            )
        )
    for host, port in redis.get("sentinels") or []:
        if not 0 < port < 65536:
            messages.append(
                Error(
                    f"REDIS_SENTINELS entry {host}:{port} has no valid port.",
                    hint="List sentinels as host:port with ports from 1 to 65535, e.g. sentinel-1:26379.",
                    id="realtime.E006",
                )
            )
    return messages


@register(TAG)
def check_channel_layer_shards(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`CHANNEL_LAYER_REDIS_URLS`: each entry a Redis URL, none twice, and a shared-state Redis too."""
    urls = getattr(settings, "CHANNEL_LAYER_REDIS_URLS", None) or []
    if not urls:
        return []
    hint = (
        "List the channel layer's Redis servers as URLs, comma separated, in the same order on every "
        "instance: CHANNEL_LAYER_REDIS_URLS=redis://layer-1:6379/0,redis://layer-2:6379/0 "
        "(or unset it: the layer then uses REDIS_URL)."
    )
    messages: list[CheckMessage] = []
    if getattr(settings, "REDIS", None) is None:
        messages.append(
            Error(
                "CHANNEL_LAYER_REDIS_URLS is set but neither REDIS_URL nor REDIS_SENTINELS: presence, rate limits "
                "and the other shared state need a Redis of their own; without one nothing uses these servers.",
                hint="Set REDIS_URL (or REDIS_SENTINELS) for the shared state as well, or unset "
                "CHANNEL_LAYER_REDIS_URLS for the embedded default (one process).",
                id="realtime.E009",
            )
        )
    seen: set[str] = set()
    for url in urls:
        problem = _redis_url_problem(url)
        if problem is not None:
            messages.append(
                Error(
                    f"CHANNEL_LAYER_REDIS_URLS entry {_without_password(url)!r} is not a Redis URL: {problem}.",
                    hint=hint,
                    id="realtime.E009",
                )
            )
        elif url in seen:
            messages.append(
                Error(
                    f"CHANNEL_LAYER_REDIS_URLS lists {_without_password(url)!r} twice: each entry is one shard.",
                    hint=hint,
                    id="realtime.E009",
                )
            )
        seen.add(url)
    if len(urls) > MAX_SHARDS:
        messages.append(
            Error(
                f"CHANNEL_LAYER_REDIS_URLS lists {len(urls)} servers; channels-redis can use at most {MAX_SHARDS}.",
                hint=hint,
                id="realtime.E009",
            )
        )
    return messages


def _redis_url_problem(url: str) -> str | None:
    """Why redis-py could not connect with `url` (its own reading of scheme, port, database), or None."""
    try:
        parts = urlsplit(url)
        parse_url(url)
    except ValueError as exc:
        return str(exc)
    if parts.scheme == "unix":
        return None if parts.path else "it names no socket path"
    if not parts.hostname:
        return "it names no host"
    database = parts.path.strip("/")
    if database and not database.isdigit():
        return f"the database after the host must be a number, not {database!r}"
    return None


def _without_password(url: str) -> str:
    """`url` with any password in it replaced, even when the URL does not parse."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:)[^/]*@", r"\1***@", url)
