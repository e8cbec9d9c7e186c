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
    (gap: live frames skipped offsets; resume_failed: the resume was refused or not answered;
    not_resumed: more streams than one `resume` may name, this one the least recently active).
    """

    stream: str
    reason: str
    offset: int | None
    epoch: str | None


class Position(NamedTuple):
    offset: int
    epoch: str


Step = dict[str, Any] | Resync

# The most streams one `resume` may name (docs/protocol.md §12).
MAX_RESUMED_STREAMS = 16
# Streams the server will never replay again: forgotten, not asked about on every reconnect.
GONE_REASONS = frozenset({"forbidden", "unknown_stream"})


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
        self._not_resumed: list[str] = []
        self._active: dict[str, int] = {}  # stream -> when it last moved (a counter)
        self._clock = 0

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

    def forget(self, name: str) -> None:
        """Stop tracking a stream (a fight that ended, a zone left, a group left)."""
        self._positions.pop(name, None)
        self._active.pop(name, None)

    def begin(self) -> dict[str, dict[str, Any]]:
        """Start a resume: returns the `streams` of the `resume` frame; their frames are held.

        At most MAX_RESUMED_STREAMS, the most recently active; the others are re-synced."""
        names = sorted(self._positions, key=lambda name: self._active.get(name, 0), reverse=True)
        self._not_resumed = names[MAX_RESUMED_STREAMS:]
        for name in self._not_resumed:
            self.forget(name)
        asked = self.positions()
        self._resuming = list(asked)
        self._held = {}
        return asked

    def zone_changed(self, frame: dict[str, Any]) -> None:
        """`zone_changed`: the world streams are now exactly the new zone's."""
        given = frame.get("streams")
        streams: dict[str, Any] = given if isinstance(given, dict) else {}
        for name in [name for name in self._positions if name.startswith("world:") and name not in streams]:
            self.forget(name)
        self.adopt(streams)

    def receive(self, frame: dict[str, Any]) -> list[Step]:
        found = _position_of(frame)
        if found is None:
            if frame.get("type") == "zone_changed":
                self.zone_changed(frame)
            return [frame]
        name, at = found
        if self._resuming is not None and name in self._resuming:
            # Replayed or live, it waits for `resumed`: only then is the order known to be complete.
            self._held.setdefault(name, []).append((at, frame))
            return []
        return self._advance(name, at, frame)

    def finish(self, resumed: dict[str, Any]) -> list[Step]:
        """The `resumed` reply: each held stream delivered in offset order, or re-synced."""
        steps: list[Step] = self._resync_not_resumed()
        given = resumed.get("streams")
        answers: dict[str, Any] = given if isinstance(given, dict) else {}
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
        steps: list[Step] = self._resync_not_resumed()
        for name in self._resuming or []:
            held = sorted(self._held.get(name, []), key=lambda item: item[0].offset)
            steps += self._restart(name, held, reason, None)
        self._resuming, self._held = None, {}
        return steps

    def cancel(self) -> None:
        """The connection closed mid-resume: the next resume asks again from the same positions."""
        self._resuming, self._held = None, {}

    def _resync_not_resumed(self) -> list[Step]:
        steps: list[Step] = [Resync(name, "not_resumed", None, None) for name in self._not_resumed]
        self._not_resumed = []
        return steps

    def _restart(
        self, name: str, held: list[tuple[Position, dict[str, Any]]], reason: str, entry: dict[str, Any] | None
    ) -> list[Step]:
        # Say so once, then deliver what arrived live from the new position (an announcement
        # cannot be re-read later; chat can be merged by `message_id`).
        now = _valid(entry)
        if reason in GONE_REASONS:  # never readable again: stop asking about it
            self.forget(name)
            return [Resync(name, reason, now.offset if now else None, now.epoch if now else None)]
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
        steps = self._step(name, at, frame, quiet=quiet)
        self._clock += 1
        self._active[name] = self._clock
        if frame.get("type") == "combat_end":  # the fight's last frame: nothing left to resume
            self.forget(name)
        return steps

    def _step(self, name: str, at: Position, frame: dict[str, Any], *, quiet: bool) -> list[Step]:
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
