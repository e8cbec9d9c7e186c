"""The store: state every instance must agree on, in Redis when `REDIS_URL` is set, else in memory.

`get_store()` is the one way to reach it: one store per process in memory (the embedded default
has one process), one per event loop with Redis (redis-py clients belong to a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.conf import settings

from realtime.store.base import MoveOutcome, MoveStatus, Opening, Position, PresenceChange, PresenceRefresh, Store
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore

__all__ = [
    "MemoryStore",
    "MoveOutcome",
    "MoveStatus",
    "Opening",
    "Position",
    "PresenceChange",
    "PresenceRefresh",
    "RedisStore",
    "Store",
    "get_store",
]

_stores: dict[Any, Store] = {}


def get_store() -> Store:
    if settings.REDIS is None:
        key: Any = "memory"
    else:
        try:
            key = asyncio.get_running_loop()
        except RuntimeError:
            key = None
    store = _stores.get(key)
    if store is None:
        store = _stores[key] = MemoryStore() if settings.REDIS is None else RedisStore.from_settings(settings.REDIS)
    return store


async def reset_stores() -> None:
    """Forget this loop's (and the in-memory) store, closing its connections (tests only)."""
    try:
        loop: Any = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    for key in (loop, "memory"):
        store = _stores.pop(key, None)
        if store is not None:
            with contextlib.suppress(Exception):
                await store.close()
