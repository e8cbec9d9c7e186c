"""Frames of `/ws/game` (docs/protocol.md §4): the client's `set_status`, and the shapes of the server
events that the server API and the publish route accept (checked before anything is sent)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

from realtime.protocol import ClientFrame

Status = Literal["online", "away", "busy"]
AnnouncementLevel = Literal["info", "warning", "critical"]
ANNOUNCEMENT_LEVELS: tuple[str, ...] = ("info", "warning", "critical")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class SetStatusIn(ClientFrame):
    """Choose a status (`offline` is the server's to say)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "set_status", "status": "away", "id": "s1"}]})

    status: Status


class ServerEvent(BaseModel):
    """Fields of a server event besides `type` and `timestamp`; extra fields are kept as sent."""

    model_config = ConfigDict(strict=True, extra="allow")


class UserField(ServerEvent):
    user_id: str

    @field_validator("user_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        return str(uuid.UUID(value))


class SystemAnnouncementOut(ServerEvent):
    message: Text
    level: AnnouncementLevel = "info"


class AchievementOut(UserField):
    achievement: Name


class GameStateOut(ServerEvent):
    key: Name
    value: Any


class PlayerStatusOut(UserField):
    username: Name
    status: Literal["online", "away", "busy", "offline"]
