"""Frames of /ws/game (docs/protocol.md §4)."""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import TypedDict

from realtime.protocol.events.shapes import (
    ALICE,
    BOB,
    GUILD,
    T0,
    PlayerStatus,
    PositionedMixin,
    Timestamp,
    UserRef,
    Uuid,
    server_frame,
)
from realtime.protocol.game import AnnouncementLevel, Name, Text


@server_frame({"type": "player_status", "user_id": ALICE, "username": "alice", "status": "online", "timestamp": T0})
class PlayerStatusEvent(TypedDict):
    """A guild or party member (or the player) came online, chose a status or went offline."""

    type: Literal["player_status"]
    user_id: Uuid
    username: str
    status: PlayerStatus
    timestamp: Timestamp


@server_frame(
    {
        "type": "membership_changed",
        "scope": "party",
        "scope_id": GUILD,
        "user_id": BOB,
        "username": "bob",
        "change": "joined",
        "timestamp": T0,
    }
)
class MembershipChanged(TypedDict):
    """Another player joined or left your guild or party."""

    type: Literal["membership_changed"]
    scope: Literal["guild", "party"]
    scope_id: Uuid
    user_id: Uuid
    username: str
    change: Literal["joined", "left"]
    timestamp: Timestamp


Invitation = TypedDict(
    "Invitation",
    {
        "type": Literal["invitation"],
        "kind": Literal["guild", "party"],
        "group_id": Uuid,
        "name": str,
        "from": UserRef,
        "expires_at": Timestamp,
        "timestamp": Timestamp,
    },
)
Invitation.__doc__ = "A guild's or party's leader invited you; join before `expires_at` (docs/protocol.md §8)."
server_frame(
    {
        "type": "invitation",
        "kind": "guild",
        "group_id": GUILD,
        "name": "Lantern Keepers",
        "from": {"id": ALICE, "username": "alice"},
        "expires_at": "2026-12-03T10:00:00.000Z",
        "timestamp": T0,
    }
)(Invitation)


@server_frame(
    {"type": "achievement", "user_id": ALICE, "username": "alice", "achievement": "first_kill", "timestamp": T0},
    published=True,
)
class Achievement(TypedDict):
    """A player (you, or a member of your guild) earned an achievement."""

    type: Literal["achievement"]
    user_id: Uuid
    username: str
    achievement: Name
    timestamp: Timestamp


@server_frame(
    {"type": "system_announcement", "message": "Server restart in 5 minutes", "level": "warning", "timestamp": T0},
    published=True,
)
class SystemAnnouncement(PositionedMixin):
    """A message to every player; sent to everyone, it is a frame of the `game` stream."""

    type: Literal["system_announcement"]
    message: Text
    level: AnnouncementLevel
    timestamp: Timestamp


@server_frame(
    {"type": "game_state", "key": "season", "value": {"name": "winter", "week": 3}, "timestamp": T0},
    published=True,
)
class GameState(PositionedMixin):
    """An update of a piece of game state (any JSON value); the server keeps no copy."""

    type: Literal["game_state"]
    key: Name
    value: Any
    timestamp: Timestamp
