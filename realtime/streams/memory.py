"""The stream log of the embedded default: streams kept in this process.

Appending assigns the offset and hands the message to the in-memory channel layer without
yielding in between, so frames reach the hub in offset order. The epoch of every stream is new
with the process: a client that kept a position across a restart is told `epoch_changed`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from realtime.streams.base import Appended, Kept, Position, StreamLog, new_epoch, stamped

# A stream nobody published to or read for this long is forgotten (its epoch with it).
POSITION_TTL_SECONDS = 24 * 3600.0


class _Stream:
    __slots__ = ("epoch", "frames", "offset", "touched")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.frames: deque[tuple[int, float, str]] = deque(maxlen=size)  # (offset, kept at, text)
        self.touched = time.monotonic()


class MemoryStreamLog(StreamLog):
    def __init__(self, layer: Any) -> None:
        self._layer = layer
        self._streams: dict[str, _Stream] = {}

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        now = time.monotonic()
        if stream is None or now - stream.touched > POSITION_TTL_SECONDS:
            stream = self._streams[name] = _Stream(settings.RECOVERY_HISTORY_SIZE)
            if len(self._streams) % 1024 == 0:
                self._forget_idle(now)
        stream.touched = now
        return stream

    def _forget_idle(self, now: float) -> None:
        self._streams = {k: v for k, v in self._streams.items() if now - v.touched <= POSITION_TTL_SECONDS}

    async def append(self, *, stream: str, group: str, text: str, message: dict[str, object]) -> Appended:
        state = self._stream(stream)
        state.offset += 1
        frame = stamped(text, stream, state.offset, state.epoch)
        state.frames.append((state.offset, time.monotonic(), frame))
        # No await before this send: the layer queues it at once, in offset order.
        await self._layer.group_send(group, {**message, "text": frame, "stream": stream, "offset": state.offset})
        return Appended(state.offset, state.epoch, frame)

    async def positions(self, streams: Sequence[str]) -> dict[str, Position]:
        found = {}
        for name in streams:
            state = self._stream(name)
            found[name] = Position(state.offset, state.epoch)
        return found

    async def kept(self, stream: str, *, after: int, upto: int | None = None) -> Kept:
        state = self._stream(stream)
        position = Position(state.offset, state.epoch)
        last = state.offset if upto is None else min(upto, state.offset)
        if after >= last:
            return Kept(position, [])
        oldest = time.monotonic() - settings.RECOVERY_HISTORY_TTL
        frames = [
            (offset, text) for offset, kept_at, text in state.frames if after < offset <= last and kept_at >= oldest
        ]
        complete = len(frames) == last - after and frames[0][0] == after + 1
        return Kept(position, frames if complete else None)
