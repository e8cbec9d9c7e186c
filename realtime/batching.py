"""Lookups that arrive together answered by one call: a reconnect storm's thousands of user
lookups become a few queries, each one thread-pool hop, instead of one hop and query per connect.

At most one call is in flight per event loop. Keys asked while it runs wait for the next call,
so batches grow with the load by themselves; a key asked alone is looked up at once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Waiting(Generic[K, V]):
    keys: dict[K, list[asyncio.Future[V | None]]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class BatchedLookup(Generic[K, V]):
    """`await lookup(key)` is `(await load_many(keys)).get(key)` for the keys asked together."""

    def __init__(self, load_many: Callable[[list[K]], Awaitable[dict[K, V]]], *, max_batch: int = 500) -> None:
        self._load_many = load_many
        self._max_batch = max_batch
        # Per event loop: tests and management commands may run several loops in one process.
        self._waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waiting[K, V]] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, key: K) -> V | None:
        return (await self.many((key,)))[key]

    async def many(self, keys: Iterable[K]) -> dict[K, V | None]:
        """Several keys at once, answered by the same calls as everyone else's."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = _Waiting()
        futures: dict[K, asyncio.Future[V | None]] = {}
        for key in keys:
            if key not in futures:
                futures[key] = loop.create_future()
                waiting.keys.setdefault(key, []).append(futures[key])
        if futures and waiting.task is None:
            waiting.task = loop.create_task(self._drain(waiting), name="batched-lookup")
        return {key: await future for key, future in futures.items()}

    async def _drain(self, waiting: _Waiting[K, V]) -> None:
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            await asyncio.sleep(0)  # keys asked in the same turn of the loop join the first call
            while waiting.keys:
                batch = dict(list(waiting.keys.items())[: self._max_batch])
                for key in batch:
                    del waiting.keys[key]
                try:
                    found = await self._load_many(list(batch))
                except Exception as exc:
                    _settle(batch, error=exc)
                else:
                    _settle(batch, found=found)
                batch = {}
        except asyncio.CancelledError:  # the loop is closing: nobody may wait forever
            for futures in [*batch.values(), *waiting.keys.values()]:
                for future in futures:
                    future.cancel()
            waiting.keys.clear()
            raise
        finally:
            waiting.task = None


def _settle(batch: dict, *, found: dict | None = None, error: Exception | None = None) -> None:
    for key, futures in batch.items():
        for future in futures:
            if future.done():  # its caller went away (the client left mid-handshake)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result((found or {}).get(key))
