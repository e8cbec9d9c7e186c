"""The store of the embedded single-process default: plain dictionaries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from realtime.aoi import cell_of, cell_span, cells_around, within
from realtime.store.base import MoveOutcome, MoveStatus, Position, PresenceChange, PresenceRefresh, Store


@dataclass(frozen=True, slots=True)
class _Held:
    """A stored position with its owner and the cell that indexes it."""

    position: Position
    instance_id: str
    connection_id: str
    cell: tuple[str, int, int]


def _within(held: _Held, x: float, y: float, radius: float) -> bool:
    return within(held.position.x, held.position.y, x, y, radius)


class MemoryStore(Store):
    def __init__(self) -> None:
        self._presence: dict[str, dict[str, tuple[str, str]]] = {}  # user -> conn -> (instance, endpoint)
        self._instance_conns: dict[str, dict[str, str]] = {}  # instance -> conn -> user
        self._status: dict[str, str] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._claims: dict[str, float] = {}
        self._positions: dict[str, _Held] = {}  # user -> position
        self._cells: dict[tuple[str, int, int], set[str]] = {}  # (zone, cx, cy) -> users
        self._left: dict[str, tuple[Position, float]] = {}  # user -> (where it left, until)

    async def connection_opened(self, *, user_id, connection_id, endpoint, instance_id, cap=0) -> PresenceChange:
        conns = self._presence.setdefault(user_id, {})
        if cap and len(conns) >= cap and connection_id not in conns:
            return PresenceChange(user_id, len(conns), admitted=False)
        conns[connection_id] = (instance_id, endpoint)
        self._instance_conns.setdefault(instance_id, {})[connection_id] = user_id
        return PresenceChange(user_id, len(conns))

    async def connection_closed(self, *, user_id, connection_id, instance_id) -> PresenceChange:
        conns = self._presence.get(user_id, {})
        conns.pop(connection_id, None)
        self._instance_conns.get(instance_id, {}).pop(connection_id, None)
        if not conns:
            self._presence.pop(user_id, None)
            self._status.pop(user_id, None)
        return PresenceChange(user_id, len(conns))

    async def user_endpoints(self, user_id) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _instance, endpoint in self._presence.get(user_id, {}).values():
            counts[endpoint] = counts.get(endpoint, 0) + 1
        return counts

    async def purge_instance(self, instance_id) -> list[str]:
        offline = []
        for connection_id, user_id in self._instance_conns.pop(instance_id, {}).items():
            conns = self._presence.get(user_id, {})
            conns.pop(connection_id, None)
            if not conns and user_id not in offline:
                self._presence.pop(user_id, None)
                self._status.pop(user_id, None)
                offline.append(user_id)
        return offline

    async def refresh_instance(self, instance_id, connections, *, gone=None) -> PresenceRefresh:
        held = self._instance_conns.setdefault(instance_id, {})
        for connection_id, (user_id, endpoint) in connections.items():
            self._presence.setdefault(user_id, {})[connection_id] = (instance_id, endpoint)
            held[connection_id] = user_id
        offline: list[str] = []
        for connection_id, user_id in (gone or {}).items():
            if connection_id in connections:
                continue
            held.pop(connection_id, None)
            conns = self._presence.get(user_id, {})
            conns.pop(connection_id, None)
            if not conns:
                self._presence.pop(user_id, None)
                self._status.pop(user_id, None)
                if user_id not in offline:
                    offline.append(user_id)
        strays = {conn: user for conn, user in held.items() if conn not in connections}
        return PresenceRefresh(tuple(offline), strays)

    async def presence_instances(self) -> dict[str, int]:
        return {instance_id: len(conns) for instance_id, conns in self._instance_conns.items() if conns}

    async def set_status(self, user_id, status) -> None:
        if status is None:
            self._status.pop(user_id, None)
        else:
            self._status[user_id] = status

    async def get_status(self, user_id) -> str | None:
        return self._status.get(user_id)

    async def hit(self, key, limit, window) -> bool:
        now = time.monotonic()
        started, count = self._windows.get(key, (now, 0))
        if now - started >= window:
            started, count = now, 0
        if count >= limit:
            self._windows[key] = (started, count)
            return False
        self._windows[key] = (started, count + 1)
        if len(self._windows) > 100_000:  # drop expired windows now and then
            self._windows = {k: v for k, v in self._windows.items() if now - v[0] < window}
        return True

    async def claim(self, key, ttl) -> bool:
        now = time.monotonic()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        self._claims[key] = now + ttl
        if len(self._claims) > 100_000:
            self._claims = {k: v for k, v in self._claims.items() if v > now}
        return True

    # --- positions -----------------------------------------------------------------------------

    def _cells_around(self, zone: str, x: float, y: float, radius: float, cell_size: float) -> Iterator[str]:
        for i, j in cells_around(*cell_of(x, y, cell_size), cell_span(radius, cell_size)):
            yield from self._cells.get((zone, i, j), ())

    def _place(self, held: _Held) -> None:
        self._positions[held.position.user_id] = held
        self._cells.setdefault(held.cell, set()).add(held.position.user_id)

    def _unplace(self, user_id: str) -> _Held | None:
        held = self._positions.pop(user_id, None)
        if held is not None:
            members = self._cells.get(held.cell)
            if members is not None:
                members.discard(user_id)
                if not members:
                    del self._cells[held.cell]
        return held

    async def position_enter(self, position, *, connection_id, instance_id, radius, cell_size):
        previous = self._unplace(position.user_id)
        cell = (position.zone, *cell_of(position.x, position.y, cell_size))
        self._place(_Held(position, instance_id, connection_id, cell))
        near = [
            held.position
            for user_id in self._cells_around(position.zone, position.x, position.y, radius, cell_size)
            if user_id != position.user_id and _within(held := self._positions[user_id], position.x, position.y, radius)
        ]
        return (previous.position if previous else None), near

    async def position_move(
        self, position, *, connection_id, radius, cell_size, max_step, rate_limit, rate_window
    ) -> MoveOutcome:
        user_id = position.user_id
        if rate_limit and not await self.hit(f"move:{user_id}", rate_limit, rate_window):
            return MoveOutcome(MoveStatus.RATE_LIMITED)
        held = self._positions.get(user_id)
        if held is None or held.position.zone != position.zone:
            return MoveOutcome(MoveStatus.NOT_IN_ZONE, held.position if held else None)
        if held.connection_id != connection_id:
            return MoveOutcome(MoveStatus.NOT_OWNER, held.position)
        old = held.position
        if not within(position.x, position.y, old.x, old.y, max_step):
            return MoveOutcome(MoveStatus.TOO_FAR, old)
        self._unplace(user_id)
        moved = Position(user_id, old.username, old.zone, position.x, position.y)
        self._place(_Held(moved, held.instance_id, connection_id, (old.zone, *cell_of(moved.x, moved.y, cell_size))))
        candidates = set(self._cells_around(old.zone, moved.x, moved.y, radius, cell_size))
        candidates.update(self._cells_around(old.zone, old.x, old.y, radius, cell_size))
        candidates.discard(user_id)
        entered, left = [], []
        for other_id in candidates:
            other = self._positions[other_id].position
            was_near = within(other.x, other.y, old.x, old.y, radius)
            is_near = within(other.x, other.y, moved.x, moved.y, radius)
            if is_near and not was_near:
                entered.append(other)
            elif was_near and not is_near:
                left.append(other_id)
        return MoveOutcome(MoveStatus.MOVED, old, tuple(entered), tuple(left))

    async def position_remove(self, user_id, *, connection_id=None) -> Position | None:
        held = self._positions.get(user_id)
        if held is None or (connection_id is not None and held.connection_id != connection_id):
            return None
        self._unplace(user_id)
        return held.position

    async def position_get(self, user_id) -> Position | None:
        held = self._positions.get(user_id)
        return held.position if held else None

    async def positions_near(self, zone, x, y, radius, cell_size) -> list[Position]:
        return [
            held.position
            for user_id in self._cells_around(zone, x, y, radius, cell_size)
            if _within(held := self._positions[user_id], x, y, radius)
        ]

    async def positions_held(self, instance_id) -> set[str]:
        return {user_id for user_id, held in self._positions.items() if held.instance_id == instance_id}

    async def purge_instance_positions(self, instance_id) -> list[Position]:
        gone = [held.position for held in self._positions.values() if held.instance_id == instance_id]
        for position in gone:
            self._unplace(position.user_id)
        return gone

    async def position_remember(self, position, ttl) -> None:
        now = time.monotonic()
        self._left[position.user_id] = (position, now + ttl)
        if len(self._left) > 100_000:
            self._left = {k: v for k, v in self._left.items() if v[1] > now}

    async def position_recall(self, user_id) -> Position | None:
        left = self._left.pop(user_id, None)
        return left[0] if left is not None and left[1] > time.monotonic() else None

    async def ping(self) -> None:
        return None
