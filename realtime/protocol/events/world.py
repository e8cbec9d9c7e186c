"""Frames of /ws/world (docs/protocol.md §7)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from realtime.protocol.events.shapes import (
    ALICE,
    BOB,
    T0,
    Coordinate,
    NearbyPlayer,
    PositionedMixin,
    ReplyMixin,
    StreamPosition,
    Timestamp,
    Uuid,
    server_frame,
)


@server_frame(
    {
        "type": "zone_changed",
        "zone": "dark_forest",
        "x": 100.0,
        "y": 100.0,
        "timestamp": T0,
        "streams": {"world:dark_forest": {"offset": 3, "epoch": "5e1a0c9d2b7f"}},
        "id": "z1",
    }
)
class ZoneChanged(ReplyMixin):
    """The answer to `zone_change`: where you now are (or watch), and the zone's stream."""

    type: Literal["zone_changed"]
    zone: str
    x: Coordinate
    y: Coordinate
    timestamp: Timestamp
    streams: dict[str, StreamPosition]


@server_frame(
    {
        "type": "nearby_players",
        "zone": "dark_forest",
        "players": [{"user_id": BOB, "username": "bob", "x": 120.0, "y": 90.0}],
        "timestamp": T0,
        "id": 7,
    }
)
class NearbyPlayers(ReplyMixin):
    """The players within the radius of what the connection watches, without yourself."""

    type: Literal["nearby_players"]
    zone: Annotated[str | None, Field(description="null before the first `zone_change`.")]
    players: list[NearbyPlayer]
    timestamp: Timestamp


@server_frame(
    {
        "type": "player_movement",
        "user_id": ALICE,
        "username": "alice",
        "x": 100.5,
        "y": 200.3,
        "zone": "starter_town",
        "timestamp": T0,
    }
)
class PlayerMovement(TypedDict):
    """A player within your radius moved (and stays within it)."""

    type: Literal["player_movement"]
    user_id: Uuid
    username: str
    x: Coordinate
    y: Coordinate
    zone: str
    timestamp: Timestamp


@server_frame(
    {
        "type": "player_entered",
        "user_id": ALICE,
        "username": "alice",
        "zone": "starter_town",
        "x": 100.5,
        "y": 200.3,
        "timestamp": T0,
    }
)
class PlayerEntered(TypedDict):
    """A player came within your radius."""

    type: Literal["player_entered"]
    user_id: Uuid
    username: str
    zone: str
    x: Coordinate
    y: Coordinate
    timestamp: Timestamp


@server_frame({"type": "player_left", "user_id": ALICE, "zone": "starter_town", "timestamp": T0})
class PlayerLeft(TypedDict):
    """A player left your radius, the zone or the world."""

    type: Literal["player_left"]
    user_id: Uuid
    zone: str
    timestamp: Timestamp


@server_frame(
    {
        "type": "world_event",
        "event": "dragon_spawn",
        "message": "A dragon lands!",
        "zone": "dark_forest",
        "timestamp": T0,
        "stream": "world:dark_forest",
        "offset": 4,
        "epoch": "5e1a0c9d2b7f",
    },
    published=True,
)
class WorldEvent(PositionedMixin):
    """Something happened in a zone (or, with `zone` null, everywhere): a frame of the zones' streams."""

    type: Literal["world_event"]
    event: Annotated[str, Field(min_length=1, max_length=64)]
    message: Annotated[str, Field(max_length=1000)]
    zone: Annotated[str | None, Field(max_length=64)]
    timestamp: Timestamp
