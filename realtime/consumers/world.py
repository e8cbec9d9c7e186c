"""`/ws/world`: movement with area of interest, zones, nearby players, world events (docs/protocol.md §7).

A connection watches nothing but world-wide events until its first `zone_change`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from realtime import groups
from realtime.consumers.base import BaseConsumer, handles
from realtime.features import recovery
from realtime.features.world import movement as world
from realtime.outbound import build_event
from realtime.protocol import streams
from realtime.protocol.world import NearbyPlayersRequestIn, PlayerMovementIn, ZoneChangeIn
from realtime.store import Position


class WorldConsumer(BaseConsumer):
    endpoint = "world"
    requires_auth = False

    def initial_groups(self) -> Iterable[str]:
        return [groups.world_all()]

    @handles("zone_change", ZoneChangeIn, auth=False)
    async def on_zone_change(self, message: ZoneChangeIn, frame_id: Any) -> None:
        view, near = await world.zone_change(
            runtime=self.node, conn=self.connection, zone_name=message.zone, x=message.x, y=message.y
        )
        # The zone's world events are a stream the connection follows from here (§12).
        positions = await recovery.follow(self.connection, [streams.world(view.zone)])
        changed = build_event("zone_changed", zone=view.zone, x=view.x, y=view.y)
        changed["streams"] = {name: position.as_wire() for name, position in positions.items()}
        self.connection.reply(changed, frame_id)
        self._send_nearby(view.zone, near, frame_id)

    @handles("player_movement", PlayerMovementIn)
    async def on_player_movement(self, message: PlayerMovementIn, frame_id: Any) -> dict[str, Any] | None:
        conn = self.connection
        outcome = await world.player_move(
            runtime=self.node, conn=conn, zone_name=message.zone, x=message.x, y=message.y
        )
        # The mover's own area of interest changed too: players it came near or left behind.
        for player in outcome.entered:
            conn.send(
                build_event(
                    "player_entered",
                    user_id=player.user_id,
                    username=player.username,
                    zone=player.zone,
                    x=player.x,
                    y=player.y,
                )
            )
        for user_id in outcome.left:
            conn.send(build_event("player_left", user_id=user_id, zone=message.zone))
        # Moves stream at 10-20 Hz: acknowledged only when the client asks (by giving an id).
        return {"type": "ack"} if frame_id is not None else None

    @handles("nearby_players_request", NearbyPlayersRequestIn, auth=False)
    async def on_nearby_players_request(self, message: NearbyPlayersRequestIn, frame_id: Any) -> None:
        zone, near = await world.nearby_players(runtime=self.node, conn=self.connection)
        self._send_nearby(zone, near, frame_id)

    async def on_disconnected(self) -> None:
        await world.watcher_gone(runtime=self.node, conn=self.connection)

    def _send_nearby(self, zone: str | None, near: list[Position], frame_id: Any) -> None:
        self.connection.reply(build_event("nearby_players", zone=zone, players=world.players_payload(near)), frame_id)
