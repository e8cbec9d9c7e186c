"""The stream log's interface: offsets, epochs and kept frames of the recoverable streams
(docs/protocol.md §12).

Appending gives a frame the stream's next offset, keeps it, and publishes it to the stream's
group in one atomic step, so two instances publishing into one stream at once cannot produce a
gap or an inversion: every instance sees the frames in offset order. Implementations sit side
by side: `memory.py` (the embedded default: one process) and `redis.py` (several instances).
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream is: the offset of its last frame (0: none yet) and its epoch."""

    offset: int
    epoch: str

    def as_wire(self) -> dict[str, object]:
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class Appended:
    """A frame given its place in a stream; `text` is the frame as every recipient gets it."""

    offset: int
    epoch: str
    text: str


@dataclass(frozen=True, slots=True)
class Kept:
    """What a stream still keeps after an offset: `frames` in order, or None when some of the
    frames asked for are gone (too many since, or older than the retention)."""

    position: Position
    frames: list[tuple[int, str]] | None


def new_epoch() -> str:
    """A stream's epoch: minted whenever its kept frames start afresh (Redis restarted empty, the
    process restarted, the stream was forgotten), so a client never takes a new stream for the old."""
    return secrets.token_hex(6)


def stamped(text: str, stream: str, offset: int, epoch: str) -> str:
    """The frame's JSON with its stream position as the last fields (one encoding, no re-parse)."""
    name, mark = orjson.dumps(stream).decode(), orjson.dumps(epoch).decode()
    return f'{text[:-1]},"stream":{name},"offset":{offset},"epoch":{mark}}}'


class StreamLog(abc.ABC):
    """Offsets and kept frames of every recoverable stream. All methods may raise when the
    backend is down; a frame that could not be appended is delivered without a position."""

    @abc.abstractmethod
    async def append(self, *, stream: str, group: str, text: str, message: dict[str, object]) -> Appended:
        """Give `text` (an encoded event) the stream's next offset, keep it, and publish the hub
        message `message` (its `text` replaced by the stamped frame, plus `stream` and `offset`)
        to `group` on every instance, in one atomic step."""

    @abc.abstractmethod
    async def positions(self, streams: Sequence[str]) -> dict[str, Position]:
        """The current position of each stream (a stream never used starts at offset 0)."""

    @abc.abstractmethod
    async def kept(self, stream: str, *, after: int, upto: int | None = None) -> Kept:
        """The frames of `stream` with offsets in (`after`, `upto`] (`upto` None: up to now)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (tests, shutdown)."""
