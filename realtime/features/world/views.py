"""What each world connection watches, and how a move reaches the watchers near it.

A watching connection is in the group of its cell and of the 8 around it (cells are one
`WORLD_NEARBY_RADIUS` wide), so everything within one radius of it lies in one of its groups. A
move is published to the mover's cell only (to the old cell as well when it crosses a border):
one publish, reaching only the instances with watchers nearby. The receiving hub then checks the
exact radius per watcher (`WorldViews.move_filter`) and picks `player_movement`,
`player_entered` or `player_left` for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from realtime import aoi, groups
from realtime.connection import Connection
from realtime.hub import Hub
from realtime.outbound import broadcast_to_channel, build_event

MOVE_FILTER = "world_move"
# World events for every zone reach watchers of a zone through its stream; this filter lets the
# plain copy on `world.all` reach only the connections that watch no zone yet.
UNWATCHED_FILTER = "world_unwatched"


@dataclass(frozen=True, slots=True)
class View:
    """Where a world connection watches. `player`: it also owns the user's position there."""

    zone: str
    x: float
    y: float
    cx: int
    cy: int
    player: bool = False


def radius() -> float:
    return settings.WORLD_NEARBY_RADIUS


def view_at(zone: str, x: float, y: float, *, player: bool) -> View:
    cx, cy = aoi.cell_of(x, y, radius())
    return View(zone, x, y, cx, cy, player)


def view_groups(view: View | None) -> set[str]:
    """The zone's group and the 3×3 cells around the view's cell."""
    if view is None:
        return set()
    names = {groups.zone(view.zone)}
    names.update(groups.zone_cell(view.zone, i, j) for i, j in aoi.cells_around(view.cx, view.cy))
    return names


def crossing(
    wx: float, wy: float, old: tuple[float, float] | None, new: tuple[float, float] | None, r: float
) -> str | None:
    """How a watcher at (wx, wy) sees a player going from `old` to `new` (either may be None):
    "move" (near before and after), "entered", "left", or None (far both times)."""
    near_old = old is not None and aoi.within(wx, wy, old[0], old[1], r)
    near_new = new is not None and aoi.within(wx, wy, new[0], new[1], r)
    if near_old:
        return "move" if near_new else "left"
    return "entered" if near_new else None


class WorldViews:
    """The view of every world connection of this instance (the world's per-connection state)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._views: dict[str, View] = {}

    def of(self, conn: Connection) -> View | None:
        return self._views.get(conn.id)

    def items(self) -> list[tuple[Connection, View]]:
        connections = self.hub.connections
        return [(connections[conn_id], view) for conn_id, view in self._views.items() if conn_id in connections]

    async def watch(self, conn: Connection, view: View | None) -> None:
        """Point a connection's view elsewhere, moving it between cell groups as needed; returns
        once the new groups are subscribed."""
        before, after = view_groups(self.of(conn)), view_groups(view)
        self._set(conn, view)
        self.hub.leave(conn, before - after)
        if after - before:
            await self.hub.join(conn, after - before)

    def step(self, conn: Connection, view: View) -> set[str]:
        """Move a player's view within its zone; returns the cell groups still to join (the
        caller joins them after telling the others, which matters more)."""
        before, after = view_groups(self.of(conn)), view_groups(view)
        self._set(conn, view)
        self.hub.leave(conn, before - after)
        return after - before

    def demote(self, conn: Connection) -> None:
        """Another connection of the user took the player: this one only watches now."""
        view = self.of(conn)
        if view is not None:
            self._set(conn, replace(view, player=False))

    def forget(self, conn: Connection) -> View | None:
        return self._views.pop(conn.id, None)

    def _set(self, conn: Connection, view: View | None) -> None:
        if view is None:
            self._views.pop(conn.id, None)
        else:
            self._views[conn.id] = view

    def unwatched_filter(self, conn: Connection, args: Any) -> str | None:
        return "text" if conn.id not in self._views else None

    def move_filter(self, conn: Connection, args: list[Any]) -> str | None:
        """Hub filter for world broadcasts (see `frame_for`)."""
        return frame_for(self._views.get(conn.id), args)


def frame_for(view: View | None, args: list[Any]) -> str | None:
    """Which frame of a world broadcast (if any) a watcher with `view` gets.

    `args`: [zone, old_x, old_y, new_x, new_y, radius, skip_cx, skip_cy, primary]. A copy sent
    to the old cell of a border-crossing move carries the new cell as `skip_*`: watchers whose
    cells touch it are in the new cell's group and get that copy, so they skip this one.
    """
    if view is None:
        return None
    zone, ox, oy, nx, ny, r, skip_cx, skip_cy, primary = args
    if view.zone != zone:
        return None
    if skip_cx is not None and abs(view.cx - skip_cx) <= 1 and abs(view.cy - skip_cy) <= 1:
        return None
    kind = crossing(view.x, view.y, None if ox is None else (ox, oy), None if nx is None else (nx, ny), r)
    if kind is None:
        return None
    return "text" if kind == primary else f"alt_{kind}"


async def announce(
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
    new_cell = aoi.cell_of(new[0], new[1], r) if new is not None else None
    old_cell = aoi.cell_of(old[0], old[1], r) if old is not None else None
    first = new_cell if new_cell is not None else old_cell
    assert first is not None, "a move has an old or a new position"
    sends: list[tuple[tuple[int, int], tuple[int, int] | None]] = [(first, None)]
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
