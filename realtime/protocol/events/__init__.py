"""Server frames (docs/protocol.md §1–§12): the exact shape of every frame the server sends.

They describe, they do not build: features build their frames as plain dicts, encoded once per
broadcast on the hot path. These typed dicts are the contract those dicts are held to:
`manage.py asyncapi` turns them into docs/asyncapi.json, and the test suite checks every frame
its clients receive against that document, a field the type does not list included.
"""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

from realtime.protocol import ENDPOINTS, EVENT_ENDPOINTS
from realtime.protocol.events.chat import ChatMessage, History, ModerationEvent, ModerationNotice, Typing
from realtime.protocol.events.combat import CombatActionResult, CombatEnd, CombatParticipant, CombatState, CombatTimeout
from realtime.protocol.events.common import Ack, ConnectionEstablished, ErrorFrame, Ping, Pong, Resumed, TokenRefreshed
from realtime.protocol.events.game import (
    Achievement,
    GameState,
    Invitation,
    MembershipChanged,
    PlayerStatusEvent,
    SystemAnnouncement,
)
from realtime.protocol.events.shapes import FrameId
from realtime.protocol.events.world import (
    NearbyPlayers,
    PlayerEntered,
    PlayerLeft,
    PlayerMovement,
    WorldEvent,
    ZoneChanged,
)

__all__ = ["DIRECT_ENDPOINTS", "SERVER_FRAMES", "FrameId", "frame_type", "server_endpoints"]

SERVER_FRAMES: tuple[Any, ...] = (
    ConnectionEstablished, ErrorFrame, Ping, Pong, Ack, TokenRefreshed, Resumed,
    PlayerStatusEvent, MembershipChanged, Invitation, Achievement, SystemAnnouncement, GameState,
    ChatMessage, Typing, History, ModerationEvent, ModerationNotice,
    CombatState, CombatActionResult, CombatTimeout, CombatEnd, CombatParticipant,
    ZoneChanged, NearbyPlayers, PlayerMovement, PlayerEntered, PlayerLeft, WorldEvent,
)  # fmt: skip

_EVERY = frozenset(ENDPOINTS)
# Frames that are no events (EVENT_ENDPOINTS has those): the connection's own and direct replies.
DIRECT_ENDPOINTS: dict[str, frozenset[str]] = {
    "connection_established": _EVERY,
    "error": _EVERY,
    "ping": _EVERY,
    "pong": _EVERY,
    "token_refreshed": _EVERY,
    "resumed": _EVERY,
    "ack": frozenset({"game", "chat", "world"}),
    "history": frozenset({"chat"}),
    "zone_changed": frozenset({"world"}),
    "nearby_players": frozenset({"world"}),
}


def frame_type(frame_class: Any) -> str:
    """The `type` a frame class describes (its `Literal`)."""
    (name,) = get_args(get_type_hints(frame_class)["type"])
    return name


def server_endpoints(frame_class: Any) -> frozenset[str]:
    """The endpoints that send frames of this class."""
    name = frame_type(frame_class)
    return EVENT_ENDPOINTS.get(name) or DIRECT_ENDPOINTS[name]
