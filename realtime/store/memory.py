"""Shared state for the embedded single-process default: plain dictionaries."""

from __future__ import annotations

import math
import time

from realtime.store import Position, PresenceChange, SharedState


class MemorySharedState(SharedState):
    def __init__(self) -> None:
        self._presence: dict[str, dict[str, tuple[str, str]]] = {}  # user -> conn -> (instance, endpoint)
        self._instance_conns: dict[str, dict[str, str]] = {}  # instance -> conn -> user
        self._status: dict[str, str] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._claims: dict[str, float] = {}
        self._positions: dict[str, tuple[Position, str]] = {}  # user -> (position, instance)

    async def connection_opened(self, *, user_id, connection_id, endpoint, instance_id) -> PresenceChange:
        conns = self._presence.setdefault(user_id, {})
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

    async def refresh_instance(self, instance_id, connections) -> None:
        for connection_id, (user_id, endpoint) in connections.items():
            self._presence.setdefault(user_id, {})[connection_id] = (instance_id, endpoint)
            self._instance_conns.setdefault(instance_id, {})[connection_id] = user_id

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

    async def position_set(self, position, *, instance_id, cell_size) -> Position | None:
        previous = self._positions.get(position.user_id)
        self._positions[position.user_id] = (position, instance_id)
        return previous[0] if previous else None

    async def position_remove(self, user_id) -> Position | None:
        previous = self._positions.pop(user_id, None)
        return previous[0] if previous else None

    async def position_get(self, user_id) -> Position | None:
        entry = self._positions.get(user_id)
        return entry[0] if entry else None

    async def positions_near(self, zone, x, y, radius, cell_size) -> list[Position]:
        return [
            p for p, _instance in self._positions.values() if p.zone == zone and math.hypot(p.x - x, p.y - y) <= radius
        ]

    async def purge_instance_positions(self, instance_id) -> list[Position]:
        gone = [p for p, inst in self._positions.values() if inst == instance_id]
        for p in gone:
            self._positions.pop(p.user_id, None)
        return gone

    async def ping(self) -> None:
        return None
