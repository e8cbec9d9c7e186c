"""The world (docs/protocol.md §7): entering zones, moving, who is near, and players leaving.

Positions live in the store (Redis with several instances), one per player, owned by the world
connection that entered the zone; they go when that connection closes or its instance dies.
The area-of-interest fan-out is in `views.py`; zones in `zones.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from realtime import metrics
from realtime.connection import Connection, ConnectionUser
from realtime.features.world.views import MOVE_FILTER, UNWATCHED_FILTER, View, WorldViews, announce, radius, view_at
from realtime.features.world.zones import ZONES_CHANGED, ZoneSpec, on_zones_changed, zone_get, zones_refresh
from realtime.protocol import ErrorCode, ProtocolError
from realtime.runtime import Runtime
from realtime.store import MoveOutcome, MoveStatus, Position

logger = logging.getLogger(__name__)


# --- what world connections do ---------------------------------------------------------------


def _player(conn: Connection) -> ConnectionUser:
    """The user behind a connection that holds (or takes) a player: authenticated by now."""
    assert conn.user is not None, "only authenticated connections hold a player"
    return conn.user


def _too_many_moves() -> ProtocolError:
    """Moves and zone changes share one per-user limit (docs/protocol.md §3)."""
    metrics.RATE_LIMITED.labels("world", "movement").inc()
    return ProtocolError(
        ErrorCode.RATE_LIMITED,
        "Too many moves; slow down.",
        limit=settings.WORLD_MOVE_RATE_LIMIT,
        window_seconds=settings.WORLD_MOVE_RATE_WINDOW,
    )


def _not_found(name: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, "No such zone.", zone=name)


def _outside(zone: ZoneSpec) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, "x and y must be inside the zone's bounds.", bounds=zone.bounds())


async def zone_change(
    *, runtime: Runtime, conn: Connection, zone_name: str, x: float | None, y: float | None
) -> tuple[View, list[Position]]:
    """Enter (a player: at the spawn point, or where it left this zone less than
    WORLD_RESUME_SECONDS ago) or watch (anonymous: at x/y or the spawn) a zone.

    Returns the new view and the players near it. Players near the old spot hear `player_left`,
    near the new one `player_entered` (a player moved within its own zone: `player_movement`
    where both spots are near).
    """
    zone = await zone_get(zone_name)
    if zone is None:
        raise _not_found(zone_name)
    views = runtime.get(WorldViews)
    r = radius()
    if conn.user_id is None:
        if x is not None and y is not None and not zone.contains(x, y):
            raise _outside(zone)
        view = view_at(zone.name, zone.spawn_x if x is None else x, zone.spawn_y if y is None else y, player=False)
        await views.watch(conn, view)
        return view, await runtime.store.positions_near(zone.name, view.x, view.y, r, r)

    user = _player(conn)
    # Every entry is announced to the watchers around it: it counts as a move (the same limit).
    limit = settings.WORLD_MOVE_RATE_LIMIT
    if limit and not await runtime.store.hit(f"move:{user.id}", limit, settings.WORLD_MOVE_RATE_WINDOW):
        raise _too_many_moves()
    x, y = await _entry_point(runtime, user.id, zone)
    view = view_at(zone.name, x, y, player=True)
    # Watch first, then place: a move nearby is either in the snapshot below or arrives after.
    await views.watch(conn, view)
    previous, near = await runtime.store.position_enter(
        Position(user.id, user.username, zone.name, view.x, view.y),
        connection_id=conn.id,
        instance_id=runtime.instance_id,
        radius=r,
        cell_size=r,
    )
    # Within the same zone this is a jump: those near both spots see a move.
    if previous is not None and previous.zone != zone.name:
        await announce(
            zone=previous.zone,
            user_id=user.id,
            username=previous.username,
            old=(previous.x, previous.y),
            new=None,
            exclude_connection=conn.id,
        )
    await announce(
        zone=zone.name,
        user_id=user.id,
        username=user.username,
        old=(previous.x, previous.y) if previous is not None and previous.zone == zone.name else None,
        new=(view.x, view.y),
        exclude_connection=conn.id,
    )
    return view, near


async def _entry_point(runtime: Runtime, user_id: str, zone: ZoneSpec) -> tuple[float, float]:
    """Where a player enters a zone: the spawn point, or where it left this zone less than
    WORLD_RESUME_SECONDS ago (its last world connection closed: a reconnect, docs/protocol.md §7)."""
    if settings.WORLD_RESUME_SECONDS > 0:
        left = await runtime.store.position_recall(user_id)
        if left is not None and left.zone == zone.name:
            return zone.clamp(left.x, left.y)
    return zone.spawn_x, zone.spawn_y


async def _remember(runtime: Runtime, position: Position) -> None:
    if settings.WORLD_RESUME_SECONDS > 0:
        await runtime.store.position_remember(position, settings.WORLD_RESUME_SECONDS)


async def player_move(*, runtime: Runtime, conn: Connection, zone_name: str, x: float, y: float) -> MoveOutcome:
    """Move the connection's player; returns the outcome with the players that came into or
    left the mover's own radius (the caller tells the mover)."""
    zone = await zone_get(zone_name)
    if zone is None:
        raise _not_found(zone_name)
    views = runtime.get(WorldViews)
    view = views.of(conn)
    if view is None or not view.player or view.zone != zone.name:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "You are not in that zone on this connection; send zone_change first.",
            zone=view.zone if view is not None and view.player else None,
        )
    if not zone.contains(x, y):
        raise _outside(zone)
    outcome = await _position_move(runtime, conn, zone.name, x, y)
    if outcome.status is MoveStatus.NOT_IN_ZONE and outcome.previous is None:
        # Our position vanished (an outage made the cluster think this instance died, or
        # Redis restarted empty): this connection still holds the player, so put it back.
        await _reclaim(runtime, conn, view)
        outcome = await _position_move(runtime, conn, zone.name, x, y)
    status = outcome.status
    if status is MoveStatus.RATE_LIMITED:
        raise _too_many_moves()
    if status in (MoveStatus.NOT_OWNER, MoveStatus.NOT_IN_ZONE):
        # Another connection of this user entered a zone since: this one only watches now.
        views.demote(conn)
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "Your player was moved by another connection; send zone_change to take it back.",
            zone=outcome.previous.zone if outcome.previous else None,
        )
    if status is MoveStatus.TOO_FAR:
        previous = outcome.previous
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"A step may be at most {settings.WORLD_MAX_STEP:g} long.",
            max_step=settings.WORLD_MAX_STEP,
            x=previous.x if previous else view.x,
            y=previous.y if previous else view.y,
        )
    previous = outcome.previous
    assert previous is not None
    joining = views.step(conn, view_at(zone.name, x, y, player=True))
    user = _player(conn)
    # Others first: the new cells' subscription (rarely needed) can wait for the broadcast.
    await announce(
        zone=zone.name,
        user_id=user.id,
        username=user.username,
        old=(previous.x, previous.y),
        new=(x, y),
        exclude_connection=conn.id,
    )
    if joining:
        await runtime.hub.join(conn, joining)
    return outcome


async def _position_move(runtime: Runtime, conn: Connection, zone: str, x: float, y: float) -> MoveOutcome:
    r = radius()
    user = _player(conn)
    return await runtime.store.position_move(
        Position(user.id, user.username, zone, x, y),
        connection_id=conn.id,
        radius=r,
        cell_size=r,
        max_step=settings.WORLD_MAX_STEP,
        rate_limit=settings.WORLD_MOVE_RATE_LIMIT,
        rate_window=settings.WORLD_MOVE_RATE_WINDOW,
    )


async def _reclaim(runtime: Runtime, conn: Connection, view: View) -> None:
    r = radius()
    user = _player(conn)
    previous, _near = await runtime.store.position_enter(
        Position(user.id, user.username, view.zone, view.x, view.y),
        connection_id=conn.id,
        instance_id=runtime.instance_id,
        radius=r,
        cell_size=r,
    )
    if previous is None:
        await announce(
            zone=view.zone,
            user_id=user.id,
            username=user.username,
            old=None,
            new=(view.x, view.y),
            exclude_connection=conn.id,
        )


async def players_reassert(runtime: Runtime) -> int:
    """Put back the positions of this instance's players that vanished from the shared state
    (Redis restarted empty, or the cluster took this instance for dead); returns how many.

    One read per run while nothing is missing. A player whose position exists elsewhere was
    taken over by another connection of the user: left alone.
    """
    views = runtime.get(WorldViews)
    players = {conn.user_id: conn for conn, view in views.items() if conn.user_id and not conn.closing and view.player}
    if not players:
        return 0
    held = await runtime.store.positions_held(runtime.instance_id)
    restored = 0
    for user_id, conn in players.items():
        if user_id in held or await runtime.store.position_get(user_id) is not None:
            continue
        view = views.of(conn)
        if conn.closing or view is None or not view.player:  # changed while we waited
            continue
        await _reclaim(runtime, conn, view)
        restored += 1
        if views.of(conn) is None:  # the connection closed meanwhile: do not leave the position behind
            await runtime.store.position_remove(user_id, connection_id=conn.id)
    if restored:
        logger.info("re-asserted %d world positions", restored)
    return restored


async def nearby_players(*, runtime: Runtime, conn: Connection) -> tuple[str | None, list[Position]]:
    """The players within the radius of what the connection watches (none before a zone_change)."""
    view = runtime.get(WorldViews).of(conn)
    if view is None:
        return None, []
    r = radius()
    near = await runtime.store.positions_near(view.zone, view.x, view.y, r, r)
    return view.zone, [p for p in near if p.user_id != conn.user_id]


async def watcher_gone(*, runtime: Runtime, conn: Connection) -> None:
    """A world connection closed: its player (if it held one) leaves the world."""
    view = runtime.get(WorldViews).forget(conn)
    if view is None or not view.player or conn.user_id is None:
        return
    previous = await runtime.store.position_remove(conn.user_id, connection_id=conn.id)
    if previous is not None:
        await _remember(runtime, previous)
        await announce(
            zone=previous.zone,
            user_id=previous.user_id,
            username=previous.username,
            old=(previous.x, previous.y),
            new=None,
        )


async def instance_positions_purge(runtime: Runtime, instance_id: str) -> int:
    """A dead instance's players leave the world; watchers near them get `player_left`."""
    gone = await runtime.store.purge_instance_positions(instance_id)
    for position in gone:
        await _remember(runtime, position)  # its player reconnects elsewhere, where it was
        await announce(
            zone=position.zone,
            user_id=position.user_id,
            username=position.username,
            old=(position.x, position.y),
            new=None,
        )
    if gone:
        logger.info("removed %d positions of dead instance %s", len(gone), instance_id)
    return len(gone)


def players_payload(positions: Iterable[Position]) -> list[dict[str, Any]]:
    return [{"user_id": p.user_id, "username": p.username, "x": p.x, "y": p.y} for p in positions]


# --- wiring ----------------------------------------------------------------------------------


def install(runtime: Runtime) -> None:
    views = WorldViews(runtime.hub)
    runtime.provide(views)
    runtime.hub.register_filter(MOVE_FILTER, views.move_filter)
    runtime.hub.register_filter(UNWATCHED_FILTER, views.unwatched_filter)
    runtime.on_control(ZONES_CHANGED, lambda conn, message: on_zones_changed(runtime, message))
    runtime.every("world-zones", lambda: settings.WORLD_ZONE_REFRESH_INTERVAL, zones_refresh)
    runtime.on_instance_dead(lambda instance_id: instance_positions_purge(runtime, instance_id))
    runtime.every("world-positions", lambda: settings.WEBSOCKET_CLEANUP_INTERVAL, lambda: players_reassert(runtime))
    runtime.on_redis_recovered(lambda: players_reassert(runtime))
