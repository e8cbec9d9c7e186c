"""Frames of `/ws/world` (docs/protocol.md §7): client frames, and the world event the server API sends."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from realtime.protocol import ClientFrame

# Long enough for any zone name; a name that is no zone's gets `not_found`, a longer one is malformed.
ZoneName = Annotated[str, Field(min_length=1, max_length=64)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]


class ZoneChangeIn(ClientFrame):
    """Enter a zone (players: at its spawn point) or watch it (anonymous: around x/y or the spawn)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "zone_change", "zone": "dark_forest", "x": 500, "y": 500, "id": "z1"}]}
    )

    zone: ZoneName
    x: Coordinate | None = None
    y: Coordinate | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ZoneChangeIn:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither")
        return self


class PlayerMovementIn(ClientFrame):
    """Move the player within the zone it entered, at most `WORLD_MAX_STEP` per move."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "player_movement", "zone": "starter_town", "x": 100.5, "y": 200.3}]}
    )

    zone: ZoneName
    x: Coordinate
    y: Coordinate


class NearbyPlayersRequestIn(ClientFrame):
    """Ask who is within the radius of what the connection watches."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "nearby_players_request", "id": 7}]})


class WorldEventOut(BaseModel):
    """A `world_event` as the server API and the publish route accept it."""

    model_config = ConfigDict(strict=True, extra="allow")

    event: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    zone: ZoneName | None = None
