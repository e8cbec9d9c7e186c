"""Stream positions and recovery: the last offset and epoch of every stream, the `resume` request
after a reconnect, and the order in which held, replayed and live frames reach the application.

Every method returns a list of steps in the order the application must see them: a frame
(dict) to deliver, or a `Resync` saying that a stream lost frames for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class Resync:
    """A stream that lost frames for good: re-read its state (history, combat state, ...).

    `reason` is the server's (epoch_changed, too_old, forbidden, unknown_stream) or the client's
    (gap: live frames skipped offsets; resume_failed: the resume was refused or not answered).
    """

    stream: str
    reason: str
    offset: int | None
    epoch: str | None


class Position(NamedTuple):
    offset: int
    epoch: str


Step = dict[str, Any] | Resync


def _position_of(frame: dict[str, Any]) -> tuple[str, Position] | None:
    stream, offset, epoch = frame.get("stream"), frame.get("offset"), frame.get("epoch")
    if isinstance(stream, str) and isinstance(offset, int) and not isinstance(offset, bool) and isinstance(epoch, str):
        return stream, Position(offset, epoch)
    return None


def _valid(at: Any) -> Position | None:
    if isinstance(at, dict) and isinstance(at.get("offset"), int) and isinstance(at.get("epoch"), str):
        return Position(at["offset"], at["epoch"])
    return None


class StreamTracker:
    """Positions of every stream a connection receives, and the frames held during a resume."""

    def __init__(self, initial: dict[str, dict[str, Any]] | None = None) -> None:
        self._positions: dict[str, Position] = {}
        for name, at in (initial or {}).items():
            if (position := _valid(at)) is not None:
                self._positions[name] = position
        self._resuming: list[str] | None = None
        self._held: dict[str, list[tuple[Position, dict[str, Any]]]] = {}

    def positions(self) -> dict[str, dict[str, Any]]:
        """The last position of every stream seen: what a `resume` asks for."""
        return {name: {"offset": at.offset, "epoch": at.epoch} for name, at in self._positions.items()}

    def __len__(self) -> int:
        return len(self._positions)

    @property
    def resuming(self) -> bool:
        return self._resuming is not None

    def adopt(self, streams: dict[str, Any] | None) -> None:
        """`connection_established.streams`: streams not tracked yet start where they stand now."""
        for name, at in (streams or {}).items():
            if name not in self._positions and (position := _valid(at)) is not None:
                self._positions[name] = position

    def begin(self) -> dict[str, dict[str, Any]]:
        """Start a resume: returns the `streams` of the `resume` frame; their frames are held."""
        asked = self.positions()
        self._resuming = list(asked)
        self._held = {}
        return asked

    def receive(self, frame: dict[str, Any]) -> list[Step]:
        found = _position_of(frame)
        if found is None:
            return [frame]
        name, at = found
        if self._resuming is not None and name in self._resuming:
            # Replayed or live, it waits for `resumed`: only then is the order known to be complete.
            self._held.setdefault(name, []).append((at, frame))
            return []
        return self._advance(name, at, frame)

    def finish(self, resumed: dict[str, Any]) -> list[Step]:
        """The `resumed` reply: each held stream delivered in offset order, or re-synced."""
        steps: list[Step] = []
        answers = resumed.get("streams") if isinstance(resumed.get("streams"), dict) else {}
        for name in self._resuming or []:
            entry = answers.get(name)
            held = sorted(self._held.get(name, []), key=lambda item: item[0].offset)
            if isinstance(entry, dict) and entry.get("recovered") is False:
                steps += self._restart(name, held, str(entry.get("reason") or "unknown_stream"), entry)
            else:
                for at, frame in held:
                    steps += self._advance(name, at, frame)
        self._resuming, self._held = None, {}
        return steps

    def fail(self, reason: str = "resume_failed") -> list[Step]:
        """The server refused or never answered the resume: every stream asked about starts over."""
        steps: list[Step] = []
        for name in self._resuming or []:
            held = sorted(self._held.get(name, []), key=lambda item: item[0].offset)
            steps += self._restart(name, held, reason, None)
        self._resuming, self._held = None, {}
        return steps

    def cancel(self) -> None:
        """The connection closed mid-resume: the next resume asks again from the same positions."""
        self._resuming, self._held = None, {}

    def _restart(
        self, name: str, held: list[tuple[Position, dict[str, Any]]], reason: str, entry: dict[str, Any] | None
    ) -> list[Step]:
        # Say so once, then deliver what arrived live from the new position (an announcement
        # cannot be re-read later; chat can be merged by `message_id`).
        now = _valid(entry)
        live = [(at, frame) for at, frame in held if now is None or at.epoch == now.epoch]
        steps: list[Step] = [Resync(name, reason, now.offset if now else None, now.epoch if now else None)]
        if live:
            self._positions[name] = Position(live[0][0].offset - 1, live[0][0].epoch)
        elif now is not None:
            self._positions[name] = now
        for at, frame in live:
            steps += self._advance(name, at, frame, quiet=True)
        return steps

    def _advance(self, name: str, at: Position, frame: dict[str, Any], *, quiet: bool = False) -> list[Step]:
        known = self._positions.get(name)
        if known is None:  # a stream joined now (a zone entered, a fight started)
            self._positions[name] = at
            return [frame]
        if known.epoch != at.epoch:
            # The server lost the stream's history: what came between is gone.
            self._positions[name] = at
            return [frame] if quiet else [Resync(name, "epoch_changed", at.offset, at.epoch), frame]
        if at.offset <= known.offset:
            return []  # seen already: a replay overlapping live frames
        self._positions[name] = at
        if at.offset > known.offset + 1 and not quiet:
            # Frames were skipped (e.g. a group left and joined again): the app should re-read.
            return [Resync(name, "gap", at.offset, at.epoch), frame]
        return [frame]
