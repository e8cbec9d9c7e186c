"""Subscribing many groups at once (the hub's subscriptions in a reconnect storm).

channels-redis subscribes one group per call, each under the lock its shard connection also
holds for every PUBLISH round trip. A storm brings thousands of new user groups at once: one
call each left them waiting behind the publishes, and the connects waiting for them (up to
`JOIN_WAIT_SECONDS`). Here every pending group of a server goes out in one SUBSCRIBE under one
lock. This uses channels-redis' pub/sub internals, checked by tests/test_layer_internals.py.
Other layers (in memory) have no I/O: their own per-group calls are fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Channels per SUBSCRIBE/UNSUBSCRIBE command, so one command never carries an unbounded list.
CHUNK = 1000


def _pubsub_layer(layer: Any) -> Any | None:
    """The per-event-loop layer of channels-redis' RedisPubSubChannelLayer, else None."""
    get_layer = getattr(type(layer), "_get_layer", None)
    return get_layer(layer) if get_layer is not None else None


def _by_shard(inner: Any, names: Sequence[str]) -> list[tuple[Any, list[str]]]:
    found: dict[int, tuple[Any, list[str]]] = {}
    for name in names:
        shard = inner._get_shard(name)
        found.setdefault(id(shard), (shard, []))[1].append(name)
    return list(found.values())


async def group_add_many(layer: Any, groups: Sequence[str], channel: str) -> None:
    inner = _pubsub_layer(layer)
    if inner is None:
        for group in groups:
            await layer.group_add(group, channel)
        return
    if channel not in inner.channels:
        raise RuntimeError(f"{channel!r} is not a channel of this process")
    names = []
    for group in groups:
        name = inner._get_group_channel_name(group)
        inner.groups.setdefault(name, set()).add(channel)
        names.append(name)
    for shard, shard_names in _by_shard(inner, names):
        async with shard._lock:
            fresh = [name for name in dict.fromkeys(shard_names) if name not in shard._subscribed_to]
            if not fresh:
                continue
            shard._ensure_redis()
            shard._ensure_receiver()
            for start in range(0, len(fresh), CHUNK):
                chunk = fresh[start : start + CHUNK]
                await shard._pubsub.subscribe(*chunk)
                shard._subscribed_to.update(chunk)


async def group_discard_many(layer: Any, groups: Sequence[str], channel: str) -> None:
    inner = _pubsub_layer(layer)
    if inner is None:
        for group in groups:
            await layer.group_discard(group, channel)
        return
    names = []
    for group in groups:
        name = inner._get_group_channel_name(group)
        members = inner.groups.get(name)
        if members is None or channel not in members:
            continue
        members.discard(channel)
        if not members:
            del inner.groups[name]
            names.append(name)
    for shard, shard_names in _by_shard(inner, names):
        async with shard._lock:
            gone = [name for name in dict.fromkeys(shard_names) if name in shard._subscribed_to]
            if not gone:
                continue
            shard._ensure_redis()
            shard._ensure_receiver()
            for start in range(0, len(gone), CHUNK):
                chunk = gone[start : start + CHUNK]
                await shard._pubsub.unsubscribe(*chunk)
                shard._subscribed_to.difference_update(chunk)
