"""The hub's channel-layer subscriptions, kept equal to the groups that have local members."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from realtime.layer_subscriptions import group_add_many, group_discard_many
from realtime.shards import LayerShards

logger = logging.getLogger(__name__)


class GroupSubscriptions:
    """Keeps the layer's group subscriptions equal to the groups that have local members.

    One task per channel-layer server applies the changes for that server's groups in order, so
    a mass connect or disconnect never floods a Redis connection pool, and a group that is
    joined and left again before the task runs costs nothing. With several servers, one that is
    down or hangs holds up only its own groups.
    """

    def __init__(self, layer: Any, channel: str, shards: LayerShards) -> None:
        self._layer = layer
        self._channel = channel
        self._shards = shards
        self.active: set[str] = set()
        self.desired: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._wake = [asyncio.Event() for _ in range(shards.count)]
        self._tasks: list[asyncio.Task] = []
        self.failures = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(shard), name=f"hub-subscriptions-{shard}") for shard in range(len(self._wake))
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _shard(self, group: str) -> int:
        return 0 if len(self._wake) == 1 else self._shards.of(group)

    def want(self, group: str) -> asyncio.Future | None:
        self.desired.add(group)
        if group in self.active:
            return None
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(group, []).append(future)
        self._wake[self._shard(group)].set()
        return future

    def drop(self, group: str) -> None:
        self.desired.discard(group)
        if group in self.active or group in self._waiters:
            self._wake[self._shard(group)].set()

    def _resolve(self, group: str) -> None:
        for future in self._waiters.pop(group, ()):
            if not future.done():
                future.set_result(None)

    def _mine(self, groups: Iterable[str], shard: int) -> list[str]:
        return list(groups) if len(self._wake) == 1 else [g for g in groups if self._shards.of(g) == shard]

    async def _run(self, shard: int) -> None:
        wake = self._wake[shard]
        backoff = 0.1
        while True:
            await wake.wait()
            wake.clear()
            try:
                # All pending changes of this server in one command each (a storm: thousands).
                gone = self._mine(self.active - self.desired, shard)
                if gone:
                    await group_discard_many(self._layer, gone, self._channel)
                    self.active.difference_update(gone)
                wanted = self._mine(self.desired - self.active, shard)
                if wanted:
                    await group_add_many(self._layer, wanted, self._channel)
                    self.active.update(wanted)
                    for group in wanted:
                        self._resolve(group)
                for group in self._mine([g for g in self._waiters if g not in self.desired], shard):
                    self._resolve(group)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                where = f" on shard {shard}" if len(self._wake) > 1 else ""
                logger.warning("channel layer subscription failed%s (%s); retrying in %.1fs", where, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                wake.set()
