"""The store's interface: what every instance must agree on (presence, counters, claims, positions).

Implementations sit side by side: `memory.py` (the embedded single-process default) and
`redis.py` (several instances). Live broadcasts do not go through here: they use the channel
layer (see `realtime/hub.py`).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Opening(NamedTuple):
    """A connection about to open, for `Store.connections_opened`."""

    user_id: str
    connection_id: str
    endpoint: str
    cap: int = 0


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """The result of adding or removing one connection from a user's presence."""

    user_id: str
    connections: int  # the user's connections across the cluster after the change
    admitted: bool = True  # False: the user already had `cap` connections; nothing was recorded

    @property
    def first(self) -> bool:
        return self.connections == 1

    @property
    def last(self) -> bool:
        return self.connections == 0


@dataclass(frozen=True, slots=True)
class PresenceRefresh:
    """What `refresh_instance` found and did.

    `offline`: users left with no connection anywhere after the `gone` connections were removed.
    `strays`: {connection id: user id} of entries this instance holds for connections that were
    not in the refresh; they are left in place (a connection may have opened a moment after the
    caller's snapshot), and the caller passes them as `gone` next time if they are still closed.
    """

    offline: tuple[str, ...] = ()
    strays: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Position:
    user_id: str
    username: str
    zone: str
    x: float
    y: float


class MoveStatus(enum.StrEnum):
    MOVED = "moved"
    RATE_LIMITED = "rate_limited"
    NOT_IN_ZONE = "not_in_zone"  # no position, or one in another zone
    NOT_OWNER = "not_owner"  # another connection of the user entered the zone since
    TOO_FAR = "too_far"  # the step is longer than `max_step`


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What `position_move` did. `previous` is the stored position before the move (when there
    is one); on a move, `entered` and `left` are the other players whose distance to the mover
    crossed the radius: the mover's own area-of-interest changes."""

    status: MoveStatus
    previous: Position | None = None
    entered: tuple[Position, ...] = ()
    left: tuple[str, ...] = ()


class Store(abc.ABC):
    """What every instance must agree on. All methods may raise when the backend is down."""

    # --- presence: which users have connections, on which endpoints, on which instance ------

    @abc.abstractmethod
    async def connection_opened(
        self, *, user_id: str, connection_id: str, endpoint: str, instance_id: str, cap: int = 0
    ) -> PresenceChange:
        """Record a connection, in one atomic step with the per-user cap: with `cap` > 0 and the
        user already holding `cap` connections across the cluster, nothing is recorded and the
        change says `admitted=False`."""

    async def connections_opened(self, instance_id: str, openings: Sequence[Opening]) -> list[PresenceChange]:
        """`connection_opened` for several connections, in order (one round trip where the
        backend allows: a reconnect storm admits thousands at once)."""
        changes = []
        for opening in openings:
            change = await self.connection_opened(
                user_id=opening.user_id,
                connection_id=opening.connection_id,
                endpoint=opening.endpoint,
                instance_id=instance_id,
                cap=opening.cap,
            )
            changes.append(change)
        return changes

    @abc.abstractmethod
    async def connection_closed(self, *, user_id: str, connection_id: str, instance_id: str) -> PresenceChange: ...

    @abc.abstractmethod
    async def user_endpoints(self, user_id: str) -> dict[str, int]:
        """Open connections of a user per endpoint, across the cluster."""

    @abc.abstractmethod
    async def purge_instance(self, instance_id: str) -> list[str]:
        """Forget a dead instance's connections; returns the users left with none."""

    @abc.abstractmethod
    async def refresh_instance(
        self,
        instance_id: str,
        connections: dict[str, tuple[str, str]],
        *,
        gone: dict[str, str] | None = None,
    ) -> PresenceRefresh:
        """Reconcile this instance's presence with what it really holds, in one atomic step.

        Re-asserts `connections` ({connection_id: (user_id, endpoint)}), e.g. after Redis
        restarted empty; removes the `gone` connections ({connection_id: user_id}: closed while
        Redis failed, or strays of an earlier refresh) and reports the users that left with no
        connection, also when their entry had already vanished; reports the strays it finds."""

    @abc.abstractmethod
    async def presence_instances(self) -> dict[str, int]:
        """{instance_id: presence entries} for every instance that holds presence (cleanup)."""

    @abc.abstractmethod
    async def set_status(self, user_id: str, status: str | None) -> None: ...

    @abc.abstractmethod
    async def get_status(self, user_id: str) -> str | None: ...

    # --- counters and claims -----------------------------------------------------------------

    @abc.abstractmethod
    async def hit(self, key: str, limit: int, window: float) -> bool:
        """Count one event in a fixed window; False when `limit` is already reached."""

    @abc.abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """True for exactly one caller until `ttl` seconds pass (e.g. typing throttles)."""

    # --- world positions (area of interest) ---------------------------------------------------
    #
    # One position per player, owned by the world connection that entered the zone. Positions
    # are indexed by cell (`cell_size` wide squares), so every query below reads only the
    # cells around a point: its cost grows with the players near it, not with the zone.

    @abc.abstractmethod
    async def position_enter(
        self, position: Position, *, connection_id: str, instance_id: str, radius: float, cell_size: float
    ) -> tuple[Position | None, list[Position]]:
        """Place a player (a zone change): returns the previous position and the other players
        within `radius` of the new one."""

    @abc.abstractmethod
    async def position_move(
        self,
        position: Position,
        *,
        connection_id: str,
        radius: float,
        cell_size: float,
        max_step: float,
        rate_limit: int,
        rate_window: float,
    ) -> MoveOutcome:
        """Move a player inside its zone, atomically checking, in this order: the per-user rate
        limit (`rate_limit` moves per `rate_window` s; 0 disables), that `connection_id` owns the
        position in `position.zone`, and the step length. `position.username` is ignored."""

    @abc.abstractmethod
    async def position_remove(self, user_id: str, *, connection_id: str | None = None) -> Position | None:
        """Remove a player's position (only if `connection_id` owns it, when given)."""

    @abc.abstractmethod
    async def position_get(self, user_id: str) -> Position | None: ...

    @abc.abstractmethod
    async def positions_near(
        self, zone: str, x: float, y: float, radius: float, cell_size: float
    ) -> list[Position]: ...

    @abc.abstractmethod
    async def positions_held(self, instance_id: str) -> set[str]:
        """Users whose position an instance holds (to re-assert them after Redis lost them)."""

    @abc.abstractmethod
    async def purge_instance_positions(self, instance_id: str) -> list[Position]:
        """Remove the positions held by a dead instance's players; returns them."""

    @abc.abstractmethod
    async def position_remember(self, position: Position, ttl: float) -> None:
        """Keep where a player left the world for `ttl` seconds (its last world connection closed)."""

    @abc.abstractmethod
    async def position_recall(self, user_id: str) -> Position | None:
        """Where the player left the world, if that was less than its `ttl` ago; forgotten once read."""

    # --- health ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def ping(self) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (tests, shutdown)."""
