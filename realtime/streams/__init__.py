"""The stream log: offsets, epochs and kept frames of the recoverable streams (docs/protocol.md §12).

`get_stream_log()` is the one way to reach it: in the process with the embedded default (one
process), in Redis next to the channel layer's pub/sub channels otherwise (one per event loop:
redis-py clients belong to a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.streams.base import Appended, Kept, Position, StreamLog, new_epoch, stamped
from realtime.streams.memory import MemoryStreamLog
from realtime.streams.redis import RedisStreamLog

__all__ = ["Appended", "Kept", "Position", "StreamLog", "get_stream_log", "new_epoch", "stamped"]

_logs: dict[Any, StreamLog] = {}


def get_stream_log() -> StreamLog:
    if settings.REDIS is None:
        key: Any = "memory"
    else:
        try:
            key = asyncio.get_running_loop()
        except RuntimeError:
            key = None
    log = _logs.get(key)
    if log is None:
        log = _logs[key] = (
            MemoryStreamLog(get_channel_layer()) if settings.REDIS is None else RedisStreamLog.from_settings()
        )
    return log


async def reset_stream_logs() -> None:
    """Forget this loop's (and the in-memory) stream log (tests only)."""
    try:
        loop: Any = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    for key in (loop, "memory"):
        log = _logs.pop(key, None)
        if log is not None:
            with contextlib.suppress(Exception):
                await log.close()
