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

    zone: ZoneName
    x: Coordinate | None = None
    y: Coordinate | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ZoneChangeIn:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither")
        return self


class PlayerMovementIn(ClientFrame):
    zone: ZoneName
    x: Coordinate
    y: Coordinate


class NearbyPlayersRequestIn(ClientFrame):
    pass


class WorldEventOut(BaseModel):
    """A `world_event` as the server API and the publish route accept it."""

    model_config = ConfigDict(strict=True, extra="allow")

    event: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    message: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    zone: ZoneName | None = None
