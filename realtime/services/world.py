"""The world (PROTOCOL §7): zones, player positions shared by every instance, area of interest.

Area of interest. A zone is cut into square cells one `WORLD_NEARBY_RADIUS` wide
(`groups.zone_cell`). A watching connection is in the group of its cell and of the 8 around it,
so everything within one radius of it lies in one of its groups. A move is published to the
mover's cell only (to the old cell as well when it crosses a border): one publish, reaching only
the instances with watchers nearby, whatever the zone's population. The receiving hub then
checks the exact radius per watcher (`move_filter`) and picks `player_movement`,
`player_entered` or `player_left` for it.

Positions live in the shared state (Redis with several instances), one per player, owned by the
world connection that entered the zone; they go when that connection closes or its instance dies.
Zones are read from the database into a per-process cache, so a move does no database read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from realtime import groups
from realtime.events import broadcast_to_channel, build_event, send_control_sync
from realtime.models.world import ZONE_NAME_PATTERN, Zone
from realtime.protocol import ErrorCode, ProtocolError
from realtime.protocol.world import WorldEventOut
from realtime.store import MoveOutcome, MoveStatus, Position

if TYPE_CHECKING:
    from realtime.connection import Connection
    from realtime.hub import Hub
    from realtime.runtime import Runtime

logger = logging.getLogger(__name__)

MOVE_FILTER = "world_move"
ZONES_CHANGED = "world_zones_changed"

# A name that is no zone is remembered this long, so unknown names cannot turn every frame into
# a query; zones created outside the admin (shell, fixtures) become visible within this time.
MISSING_ZONE_SECONDS = 5.0
MISSING_ZONE_MEMORY = 1000

_zone_name = re.compile(ZONE_NAME_PATTERN)


# --- zones -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    name: str
    min_x: float
    min_y: float
    max_x: float
    max_y: float
    spawn_x: float
    spawn_y: float

    def contains(self, x: float, y: float) -> bool:
        return self.min_x <= x <= self.max_x and self.min_y <= y <= self.max_y

    def clamp(self, x: float, y: float) -> tuple[float, float]:
        """The nearest point inside the bounds."""
        return min(max(x, self.min_x), self.max_x), min(max(y, self.min_y), self.max_y)

    def bounds(self) -> dict[str, float]:
        return {"min_x": self.min_x, "min_y": self.min_y, "max_x": self.max_x, "max_y": self.max_y}


_ZONE_FIELDS = ("name", "min_x", "min_y", "max_x", "max_y", "spawn_x", "spawn_y")


class _ZoneCache:
    """Zones of this process. Replaced whole (one assignment), so readers never see half a load."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneSpec] = {}
        self.loaded = False
        self.missing: dict[str, float] = {}
        self.last_notice: str | None = None
        self.tasks: set[asyncio.Task] = set()

    def replace(self, zones: dict[str, ZoneSpec]) -> None:
        self.zones = zones
        self.loaded = True
        self.missing = {}


_cache = _ZoneCache()


def zones_load() -> dict[str, ZoneSpec]:
    """Every zone from the database (sync)."""
    return {row[0]: ZoneSpec(*row) for row in Zone.objects.values_list(*_ZONE_FIELDS)}


def _zone_load_one(name: str) -> ZoneSpec | None:
    row = Zone.objects.filter(name=name).values_list(*_ZONE_FIELDS).first()
    return ZoneSpec(*row) if row else None


def zones_refresh_sync() -> None:
    _cache.replace(zones_load())


async def zones_refresh() -> None:
    """Reload this process's zone cache (periodically, and when the admin changed a zone)."""
    _cache.replace(await database_sync_to_async(zones_load)())


async def zone_get(name: str) -> ZoneSpec | None:
    """The zone called `name`, from the cache; a name not cached is looked up once."""
    zone = _cache.zones.get(name)
    if zone is not None or not _zone_name.match(name):
        return zone
    if not _cache.loaded:
        await zones_refresh()
        return _cache.zones.get(name)
    missed = _cache.missing.get(name)
    if missed is not None and time.monotonic() - missed < MISSING_ZONE_SECONDS:
        return None
    zone = await database_sync_to_async(_zone_load_one)(name)
    if zone is None:
        if len(_cache.missing) >= MISSING_ZONE_MEMORY:
            _cache.missing = {}
        _cache.missing[name] = time.monotonic()
    else:
        _cache.zones = {**_cache.zones, name: zone}
    return zone


def zones_changed_on_commit() -> None:
    """After an admin edit: reload here, and tell every instance with world watchers to reload."""

    def notify() -> None:
        zones_refresh_sync()
        send_control_sync(groups.world_all(), ZONES_CHANGED)

    transaction.on_commit(notify)


def _on_zones_changed(conn: Connection, message: dict[str, Any]) -> None:
    # A control runs once per local member of `world.all`; reload once per notice.
    notice = message.get("id")
    if notice == _cache.last_notice:
        return
    _cache.last_notice = notice
    task = asyncio.get_running_loop().create_task(zones_refresh())
    _cache.tasks.add(task)
    task.add_done_callback(_cache.tasks.discard)


# --- area of interest: cells, views and the receiving-side filter ----------------------------


class View(NamedTuple):
    """Where a world connection watches. `player`: it also owns the user's position there.

    Laid out (zone, x, y, ...) so the hub's built-in "near" filter reads it too.
    """

    zone: str
    x: float
    y: float
    cx: int
    cy: int
    player: bool = False


def radius() -> float:
    return settings.WORLD_NEARBY_RADIUS


def view_at(zone: str, x: float, y: float, *, player: bool) -> View:
    cx, cy = groups.cell_of(x, y, radius())
    return View(zone, x, y, cx, cy, player)


def view_groups(view: View | None) -> set[str]:
    """The zone's group and the 3×3 cells around the view's cell."""
    if view is None:
        return set()
    names = {groups.zone(view.zone)}
    for i in (view.cx - 1, view.cx, view.cx + 1):
        for j in (view.cy - 1, view.cy, view.cy + 1):
            names.add(groups.zone_cell(view.zone, i, j))
    return names


async def view_set(hub: Hub, conn: Connection, view: View | None) -> None:
    """Point a connection's view elsewhere, moving it between cell groups as needed."""
    before, after = view_groups(conn.view), view_groups(view)
    conn.view = view
    hub.leave(conn, before - after)
    if after - before:
        await hub.join(conn, after - before)


def crossing(wx: float, wy: float, old: Iterable[float] | None, new: Iterable[float] | None, r: float) -> str | None:
    """How a watcher at (wx, wy) sees a player going from `old` to `new` (either may be None):
    "move" (near before and after), "entered", "left", or None (far both times)."""
    r2 = r * r
    near_old = near_new = False
    if old is not None:
        ox, oy = old
        near_old = (wx - ox) * (wx - ox) + (wy - oy) * (wy - oy) <= r2
    if new is not None:
        nx, ny = new
        near_new = (wx - nx) * (wx - nx) + (wy - ny) * (wy - ny) <= r2
    if near_old:
        return "move" if near_new else "left"
    return "entered" if near_new else None


def move_filter(conn: Connection, args: list[Any]) -> str | None:
    """Hub filter for world broadcasts: which frame (if any) this watcher gets.

    `args`: [zone, old_x, old_y, new_x, new_y, radius, skip_cx, skip_cy, primary]. A copy sent
    to the old cell of a border-crossing move carries the new cell as `skip_*`: watchers whose
    cells touch it are in the new cell's group and get that copy, so they skip this one.
    """
    view = conn.view
    if view is None:
        return None
    zone, ox, oy, nx, ny, r, skip_cx, skip_cy, primary = args
    if view[0] != zone:
        return None
    if skip_cx is not None and abs(view[3] - skip_cx) <= 1 and abs(view[4] - skip_cy) <= 1:
        return None
    kind = crossing(view[1], view[2], None if ox is None else (ox, oy), None if nx is None else (nx, ny), r)
    if kind is None:
        return None
    return "text" if kind == primary else f"alt_{kind}"


async def _announce(
    *,
    zone: str,
    user_id: str,
    username: str,
    old: tuple[float, float] | None,
    new: tuple[float, float] | None,
    exclude_connection: str | None = None,
) -> None:
    """Tell the watchers near `old` and/or `new` that a player moved, arrived or went."""
    r = radius()
    frames: dict[str, dict[str, Any]] = {}
    if new is not None:
        frames["entered"] = build_event(
            "player_entered", user_id=user_id, username=username, zone=zone, x=new[0], y=new[1]
        )
    if old is not None:
        frames["left"] = build_event("player_left", user_id=user_id, zone=zone)
    if old is not None and new is not None:
        frames["move"] = build_event(
            "player_movement", user_id=user_id, username=username, x=new[0], y=new[1], zone=zone
        )
        primary = "move"
    else:
        primary = "entered" if new is not None else "left"
    alternatives = {f"alt_{kind}": frame for kind, frame in frames.items() if kind != primary}
    ox, oy = old if old is not None else (None, None)
    nx, ny = new if new is not None else (None, None)
    new_cell = groups.cell_of(nx, ny, r) if new is not None else None
    old_cell = groups.cell_of(ox, oy, r) if old is not None else None
    sends = [(new_cell or old_cell, None)]
    if new_cell is not None and old_cell is not None and new_cell != old_cell:
        sends.append((old_cell, new_cell))
    for cell, skip in sends:
        await broadcast_to_channel(
            groups.zone_cell(zone, *cell),
            frames[primary],
            exclude_connection=exclude_connection,
            filter_name=MOVE_FILTER,
            filter_args=[zone, ox, oy, nx, ny, r, *(skip or (None, None)), primary],
            alternatives=alternatives,
        )


# --- what world connections do ---------------------------------------------------------------


def _not_found(name: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, "No such zone.", zone=name)


def _outside(zone: ZoneSpec) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_MESSAGE, "x and y must be inside the zone's bounds.", bounds=zone.bounds())


async def zone_change(
    *, runtime: Runtime, conn: Connection, zone_name: str, x: float | None, y: float | None
) -> tuple[View, list[Position]]:
    """Enter (a player, at the spawn point) or watch (anonymous: at x/y or the spawn) a zone.

    Returns the new view and the players near it. Players near the old spot hear `player_left`,
    near the new one `player_entered` (a player moved within its own zone: `player_movement`
    where both spots are near).
    """
    zone = await zone_get(zone_name)
    if zone is None:
        raise _not_found(zone_name)
    r = radius()
    if conn.user_id is None:
        if x is not None and y is not None and not zone.contains(x, y):
            raise _outside(zone)
        view = view_at(zone.name, zone.spawn_x if x is None else x, zone.spawn_y if y is None else y, player=False)
        await view_set(runtime.hub, conn, view)
        return view, await runtime.state.positions_near(zone.name, view.x, view.y, r, r)

    view = view_at(zone.name, zone.spawn_x, zone.spawn_y, player=True)
    # Watch first, then place: a move nearby is either in the snapshot below or arrives after.
    await view_set(runtime.hub, conn, view)
    previous, near = await runtime.state.position_enter(
        Position(conn.user_id, conn.username or "", zone.name, view.x, view.y),
        connection_id=conn.id,
        instance_id=runtime.instance_id,
        radius=r,
        cell_size=r,
    )
    # Within the same zone this is a jump: those near both spots see a move.
    same_zone = previous is not None and previous.zone == zone.name
    if previous is not None and not same_zone:
        await _announce(
            zone=previous.zone,
            user_id=conn.user_id,
            username=previous.username,
            old=(previous.x, previous.y),
            new=None,
            exclude_connection=conn.id,
        )
    await _announce(
        zone=zone.name,
        user_id=conn.user_id,
        username=conn.username or "",
        old=(previous.x, previous.y) if same_zone else None,
        new=(view.x, view.y),
        exclude_connection=conn.id,
    )
    return view, near


async def player_move(*, runtime: Runtime, conn: Connection, zone_name: str, x: float, y: float) -> MoveOutcome:
    """Move the connection's player; returns the outcome with the players that came into or
    left the mover's own radius (the caller tells the mover)."""
    zone = await zone_get(zone_name)
    if zone is None:
        raise _not_found(zone_name)
    view = conn.view
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
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            "Too many moves; slow down.",
            limit=settings.WORLD_MOVE_RATE_LIMIT,
            window_seconds=settings.WORLD_MOVE_RATE_WINDOW,
        )
    if status in (MoveStatus.NOT_OWNER, MoveStatus.NOT_IN_ZONE):
        # Another connection of this user entered a zone since: this one only watches now.
        conn.view = view._replace(player=False)
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
    new_view = view_at(zone.name, x, y, player=True)
    joining: set[str] = set()
    if (new_view.cx, new_view.cy) != (view.cx, view.cy):
        before, after = view_groups(view), view_groups(new_view)
        runtime.hub.leave(conn, before - after)
        joining = after - before
    conn.view = new_view
    # Others first: the new cells' subscription (rarely needed) can wait for the broadcast.
    await _announce(
        zone=zone.name,
        user_id=conn.user_id,
        username=conn.username or "",
        old=(previous.x, previous.y),
        new=(x, y),
        exclude_connection=conn.id,
    )
    if joining:
        await runtime.hub.join(conn, joining)
    return outcome


async def _position_move(runtime: Runtime, conn: Connection, zone: str, x: float, y: float) -> MoveOutcome:
    r = radius()
    return await runtime.state.position_move(
        Position(conn.user_id, conn.username or "", zone, x, y),
        connection_id=conn.id,
        radius=r,
        cell_size=r,
        max_step=settings.WORLD_MAX_STEP,
        rate_limit=settings.WORLD_MOVE_RATE_LIMIT,
        rate_window=settings.WORLD_MOVE_RATE_WINDOW,
    )


async def _reclaim(runtime: Runtime, conn: Connection, view: View) -> None:
    r = radius()
    previous, _near = await runtime.state.position_enter(
        Position(conn.user_id, conn.username or "", view.zone, view.x, view.y),
        connection_id=conn.id,
        instance_id=runtime.instance_id,
        radius=r,
        cell_size=r,
    )
    if previous is None:
        await _announce(
            zone=view.zone,
            user_id=conn.user_id,
            username=conn.username or "",
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
    players = {
        conn.user_id: conn
        for conn in runtime.hub.connections.values()
        if conn.endpoint == "world" and conn.user_id and not conn.closing and conn.view and conn.view.player
    }
    if not players:
        return 0
    held = await runtime.state.positions_held(runtime.instance_id)
    restored = 0
    for user_id, conn in players.items():
        if user_id in held or await runtime.state.position_get(user_id) is not None:
            continue
        view = conn.view
        if conn.closing or view is None or not view.player:  # changed while we waited
            continue
        await _reclaim(runtime, conn, view)
        restored += 1
        if conn.view is None:  # the connection closed meanwhile: do not leave the position behind
            await runtime.state.position_remove(user_id, connection_id=conn.id)
    if restored:
        logger.info("re-asserted %d world positions", restored)
    return restored


async def nearby_players(*, runtime: Runtime, conn: Connection) -> tuple[str | None, list[Position]]:
    """The players within the radius of what the connection watches (none before a zone_change)."""
    view = conn.view
    if view is None:
        return None, []
    r = radius()
    near = await runtime.state.positions_near(view.zone, view.x, view.y, r, r)
    return view.zone, [p for p in near if p.user_id != conn.user_id]


async def watcher_gone(*, runtime: Runtime, conn: Connection) -> None:
    """A world connection closed: its player (if it held one) leaves the world."""
    view, conn.view = conn.view, None
    if view is None or not view.player or conn.user_id is None:
        return
    previous = await runtime.state.position_remove(conn.user_id, connection_id=conn.id)
    if previous is not None:
        await _announce(
            zone=previous.zone,
            user_id=previous.user_id,
            username=previous.username,
            old=(previous.x, previous.y),
            new=None,
        )


async def instance_positions_purge(runtime: Runtime, instance_id: str) -> int:
    """A dead instance's players leave the world; watchers near them get `player_left`."""
    gone = await runtime.state.purge_instance_positions(instance_id)
    for position in gone:
        await _announce(
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


# --- world events (server API) ---------------------------------------------------------------


async def world_event_send(*, event: str, message: str = "", zone: str | None = None, **extra: Any) -> None:
    """Send `world_event` to one zone's watchers, or with `zone=None` to every world connection.

    Raises ValueError for a bad shape and LookupError for an unknown zone.
    """
    fields = WorldEventOut.model_validate({"event": event, "message": message, "zone": zone, **extra})
    if fields.zone is not None and await zone_get(fields.zone) is None:
        raise LookupError(f"no zone called {fields.zone!r}")
    payload = fields.model_dump()
    group = groups.zone(fields.zone) if fields.zone is not None else groups.world_all()
    await broadcast_to_channel(group, build_event("world_event", **payload))


# --- wiring ----------------------------------------------------------------------------------


def install(runtime: Runtime) -> None:
    runtime.hub.register_filter(MOVE_FILTER, move_filter)
    runtime.hub.register_control(ZONES_CHANGED, _on_zones_changed)
    runtime.every("world-zones", lambda: settings.WORLD_ZONE_REFRESH_INTERVAL, zones_refresh)
    runtime.on_instance_dead(lambda instance_id: instance_positions_purge(runtime, instance_id))
    runtime.every("world-positions", lambda: settings.WEBSOCKET_CLEANUP_INTERVAL, lambda: players_reassert(runtime))
