"""Server frames (docs/protocol.md §1–§12): the exact shape of every frame the server sends.

They describe, they do not build: features build their frames as plain dicts, encoded once per
broadcast on the hot path. These typed dicts are the contract those dicts are held to:
`manage.py asyncapi` turns them into docs/asyncapi.json, and the test suite checks every frame
its clients receive against that document, a field the type does not list included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, TypeVar, get_args, get_type_hints

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypeAliasType, TypedDict

from realtime.protocol import ENDPOINTS, EVENT_ENDPOINTS, ErrorCode
from realtime.protocol.chat import ChatChannel
from realtime.protocol.game import AnnouncementLevel, Name, Text
from realtime.protocol.streams import STREAM_NAME

# --- shared shapes ------------------------------------------------------------------------------

Timestamp = TypeAliasType(
    "Timestamp",
    Annotated[
        str,
        Field(
            pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
            json_schema_extra={"format": "date-time"},
            description="ISO 8601, UTC, millisecond precision, `Z` suffix.",
        ),
    ],
)
Uuid = TypeAliasType(
    "Uuid",
    Annotated[
        str,
        Field(
            pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            json_schema_extra={"format": "uuid"},
            description="A UUID in canonical lower-case form.",
        ),
    ],
)
FrameId = TypeAliasType(
    "FrameId",
    Annotated[
        Annotated[str, Field(max_length=64)] | int,
        Field(
            description="A client frame's `id` (a string of at most 64 characters, or an integer of at most "
            "64 digits); every direct reply repeats it."
        ),
    ],
)
Endpoint = TypeAliasType("Endpoint", Literal["game", "chat", "combat", "world"])
PlayerStatus = TypeAliasType("PlayerStatus", Literal["online", "away", "busy", "offline"])
ModerationAction = TypeAliasType(
    "ModerationAction", Literal["mute", "unmute", "ban", "unban", "kick", "delete_message"]
)
StreamName = TypeAliasType(
    "StreamName",
    Annotated[
        str,
        Field(pattern=STREAM_NAME.pattern, description="A recoverable stream (docs/protocol.md §12)."),
    ],
)
Coordinate = Annotated[float, Field(description="A position in the zone; integers or decimals.")]


class StreamPosition(TypedDict):
    """Where a stream stands: the offset of its last frame (0: none yet) and its epoch."""

    offset: Annotated[int, Field(ge=0)]
    epoch: str


class StreamRecovered(TypedDict):
    """A stream of `resume` whose missed frames were replayed before `resumed`."""

    recovered: Literal[True]
    missed: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    epoch: str


class StreamNotRecovered(TypedDict):
    """A stream of `resume` that cannot be recovered: re-sync it (or drop it)."""

    recovered: Literal[False]
    reason: Literal["epoch_changed", "too_old", "forbidden", "unknown_stream"]
    offset: Annotated[int, Field(ge=0)]
    epoch: str


class UserRef(TypedDict):
    id: Uuid
    username: str


class FieldProblem(TypedDict):
    """One reason a client frame does not match its schema."""

    field: str
    problem: str


class Participant(TypedDict):
    """A fighter, in turn order."""

    id: Annotated[str, Field(description="A player's user id, or a monster id unique in the fight (`goblin-1`).")]
    kind: Literal["player", "monster"]
    name: str
    hp: Annotated[int, Field(ge=0)]
    max_hp: Annotated[int, Field(ge=1)]
    alive: bool


class Turn(TypedDict):
    actor: Annotated[str | None, Field(description="Whose turn it is; null once the fight is over.")]
    deadline: Annotated[
        Timestamp | None, Field(description="When a player's turn times out; null while a monster acts or when over.")
    ]


class NearbyPlayer(TypedDict):
    user_id: Uuid
    username: str
    x: Coordinate
    y: Coordinate


# Mixins: a direct reply repeats the client frame's `id`; a frame of a recoverable stream carries
# its position as its last fields (docs/protocol.md §12), unless it went out during an outage.


class _Reply(TypedDict):
    id: NotRequired[FrameId]


class _Positioned(TypedDict):
    stream: NotRequired[StreamName]
    offset: NotRequired[Annotated[int, Field(ge=1, description="The frame's place in its stream, from 1.")]]
    epoch: NotRequired[Annotated[str, Field(description="The stream's epoch: offsets of another mean nothing.")]]


FrameType = TypeVar("FrameType", bound=type)


def server_frame(example: dict[str, Any], *, published: bool = False) -> Callable[[FrameType], FrameType]:
    """A server frame type: a field it does not list is a mistake, except in the types the publish
    route sends (`published`), which keep the publisher's extra fields (docs/protocol.md §8)."""
    return with_config(ConfigDict(extra="allow" if published else "forbid", json_schema_extra={"examples": [example]}))


T0 = "2026-11-26T10:00:00.000Z"
ALICE = "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"
BOB = "0d8e3c1a-5b7f-4c2e-9a64-3f1b2c4d5e6f"
GUILD = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
MESSAGE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FIGHT = "c7a7d0e1-af8b-4639-be66-8f9d5313b04e"

# --- every endpoint (§1–§3, §12) ------------------------------------------------------------------


@server_frame(
    {
        "type": "connection_established",
        "connection_id": "3f0c9f5bd2a54f0a9b0e7f3d9c8e1a2b",
        "endpoint": "chat",
        "user": {"id": ALICE, "username": "alice"},
        "heartbeat_interval": 30,
        "protocol": "1.1",
        "streams": {"chat:global": {"offset": 1841, "epoch": "9c2f0a6d1e44"}},
        "server_time": T0,
    }
)
class ConnectionEstablished(TypedDict):
    """The first frame of every accepted connection (docs/protocol.md §1)."""

    type: Literal["connection_established"]
    connection_id: str
    endpoint: Endpoint
    user: Annotated[UserRef | None, Field(description="null for anonymous connections.")]
    heartbeat_interval: Annotated[float, Field(gt=0, description="Seconds between the server's pings.")]
    protocol: Annotated[str, Field(description="The protocol version the server speaks (`major.minor`).")]
    streams: Annotated[
        dict[str, StreamPosition],
        Field(description="The position of every recoverable stream the connection receives from the start."),
    ]
    server_time: Timestamp


@server_frame(
    {
        "type": "error",
        "code": "invalid_message",
        "message": "The frame does not match its schema.",
        "id": "req-7",
        "details": [{"field": "content", "problem": "Field required"}],
    }
)
class ErrorFrame(_Reply):
    """A refused frame, or the reason for the close that follows (docs/protocol.md §2)."""

    type: Literal["error"]
    code: ErrorCode
    message: str
    details: NotRequired[
        Annotated[
            list[FieldProblem] | dict[str, Any],
            Field(description="`{field, problem}` for schema errors, or an object (e.g. `{until}` for `muted`)."),
        ]
    ]


@server_frame({"type": "ping", "timestamp": T0})
class Ping(TypedDict):
    """Every `heartbeat_interval` seconds; answer with `pong` (docs/protocol.md §3)."""

    type: Literal["ping"]
    timestamp: Timestamp


@server_frame({"type": "pong", "timestamp": T0, "id": 7})
class Pong(_Reply):
    """The answer to a client's `ping`."""

    type: Literal["pong"]
    timestamp: Timestamp


@server_frame({"type": "ack", "message_id": MESSAGE, "timestamp": T0, "id": "m-1"})
class Ack(TypedDict):
    """Success of a frame sent with an `id` that has no other reply: chat adds the message's
    `message_id` and `timestamp`, moderation the action's fields."""

    type: Literal["ack"]
    message_id: NotRequired[Uuid | None]
    action: NotRequired[ModerationAction]
    user_id: NotRequired[Uuid | None]
    moderator: NotRequired[str]
    reason: NotRequired[str | None]
    until: NotRequired[Timestamp | None]
    timestamp: NotRequired[Timestamp]
    id: FrameId


@server_frame({"type": "token_refreshed", "expires_at": "2026-11-26T10:15:00.000Z", "id": 9})
class TokenRefreshed(_Reply):
    """The connection now runs on the new token, until `expires_at` (docs/protocol.md §3)."""

    type: Literal["token_refreshed"]
    expires_at: Timestamp


@server_frame(
    {
        "type": "resumed",
        "streams": {
            "chat:global": {"recovered": True, "missed": 7, "offset": 1842, "epoch": "9c2f0a6d1e44"},
            f"chat:guild:{GUILD}": {"recovered": False, "reason": "too_old", "offset": 2310, "epoch": "0b7d21aa93f0"},
        },
        "timestamp": T0,
        "id": "r1",
    }
)
class Resumed(_Reply):
    """The answer to `resume`, after the replayed frames (docs/protocol.md §12)."""

    type: Literal["resumed"]
    streams: dict[str, StreamRecovered | StreamNotRecovered]
    timestamp: Timestamp


# --- /ws/game (§4) ---------------------------------------------------------------------------------


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
class SystemAnnouncement(_Positioned):
    """A message to every player; sent to everyone, it is a frame of the `game` stream."""

    type: Literal["system_announcement"]
    message: Text
    level: AnnouncementLevel
    timestamp: Timestamp


@server_frame(
    {"type": "game_state", "key": "season", "value": {"name": "winter", "week": 3}, "timestamp": T0},
    published=True,
)
class GameState(_Positioned):
    """An update of a piece of game state (any JSON value); the server keeps no copy."""

    type: Literal["game_state"]
    key: Name
    value: Any
    timestamp: Timestamp


# --- /ws/chat (§5) ---------------------------------------------------------------------------------


@server_frame(
    {
        "type": "chat_message",
        "message_id": MESSAGE,
        "user": "alice",
        "user_id": ALICE,
        "content": "Hello world!",
        "channel": "global",
        "to": None,
        "timestamp": T0,
        "stream": "chat:global",
        "offset": 1842,
        "epoch": "9c2f0a6d1e44",
    }
)
class ChatMessage(_Positioned):
    """A chat message; global, guild and party messages are frames of their channel's stream."""

    type: Literal["chat_message"]
    message_id: Uuid
    user: str
    user_id: Uuid
    content: str
    channel: ChatChannel
    to: Annotated[Uuid | None, Field(description="The recipient of a private message, else null.")]
    timestamp: Timestamp


@server_frame(
    {"type": "typing", "user": "alice", "user_id": ALICE, "channel": "party", "is_typing": True, "timestamp": T0}
)
class Typing(TypedDict):
    """Someone else in the conversation started or stopped typing."""

    type: Literal["typing"]
    user: str
    user_id: Uuid
    channel: ChatChannel
    is_typing: bool
    timestamp: Timestamp


History = TypedDict(
    "History",
    {
        "type": Literal["history"],
        "channel": ChatChannel,
        "messages": Annotated[list[ChatMessage], Field(description="Oldest first, each as it was delivered live.")],
        "has_more": bool,
        "with": NotRequired[Uuid],
        "id": NotRequired[FrameId],
    },
)
History.__doc__ = "A page of earlier messages, the answer to `history_request` (docs/protocol.md §5)."
server_frame(
    {
        "type": "history",
        "channel": "global",
        "messages": [
            {
                "type": "chat_message",
                "message_id": MESSAGE,
                "user": "bob",
                "user_id": BOB,
                "content": "older",
                "channel": "global",
                "to": None,
                "timestamp": T0,
            }
        ],
        "has_more": True,
        "id": "h-2",
    }
)(History)


class _Moderation(TypedDict):
    action: ModerationAction
    user_id: Annotated[Uuid | None, Field(description="The affected user (for `delete_message`: the author).")]
    message_id: Annotated[Uuid | None, Field(description="Set for `delete_message` only.")]
    moderator: str
    reason: str | None
    until: Annotated[Timestamp | None, Field(description="The end of a timed mute or ban, else null.")]
    timestamp: Timestamp


MODERATION_EXAMPLE = {
    "action": "mute",
    "user_id": BOB,
    "message_id": None,
    "moderator": "mia",
    "reason": "spam",
    "until": "2026-11-26T10:10:00.000Z",
    "timestamp": T0,
}


@server_frame({"type": "moderation_event", **MODERATION_EXAMPLE})
class ModerationEvent(_Moderation, _Positioned):
    """A moderator acted; to every chat connection, a frame of the `chat:global` stream."""

    type: Literal["moderation_event"]


@server_frame({"type": "moderation_notice", **MODERATION_EXAMPLE})
class ModerationNotice(_Moderation):
    """A moderator acted on you (kept for later, except a kick)."""

    type: Literal["moderation_notice"]


# --- /ws/combat (§6) ---------------------------------------------------------------------------------


@server_frame(
    {
        "type": "combat_state",
        "combat_session_id": FIGHT,
        "status": "active",
        "round": 1,
        "turn": {"actor": ALICE, "deadline": "2026-11-26T10:00:30.000Z"},
        "participants": [
            {"id": "goblin-1", "kind": "monster", "name": "Goblin", "hp": 12, "max_hp": 12, "alive": True},
            {"id": ALICE, "kind": "player", "name": "alice", "hp": 27, "max_hp": 30, "alive": True},
        ],
        "timestamp": T0,
    }
)
class CombatState(_Positioned, _Reply):
    """The whole fight: after every step, on request and when you reconnect to it."""

    type: Literal["combat_state"]
    combat_session_id: Uuid
    status: Literal["active", "victory", "defeat", "fled"]
    round: Annotated[int, Field(ge=1)]
    turn: Turn
    participants: list[Participant]
    timestamp: Timestamp


@server_frame(
    {
        "type": "combat_action_result",
        "combat_session_id": FIGHT,
        "actor": ALICE,
        "action": "attack",
        "target": "goblin-1",
        "damage": 7,
        "target_hp": 5,
        "critical": False,
        "timestamp": T0,
    }
)
class CombatActionResult(_Positioned, _Reply):
    """What one action did, the monsters' included."""

    type: Literal["combat_action_result"]
    combat_session_id: Uuid
    actor: str
    action: Literal["attack", "defend", "flee"]
    target: str | None
    damage: Annotated[int, Field(ge=0)]
    target_hp: Annotated[int, Field(ge=0)] | None
    critical: NotRequired[Annotated[bool, Field(description="With attacks.")]]
    fled: NotRequired[Annotated[bool, Field(description="With `flee`: whether it worked.")]]
    timestamp: Timestamp


@server_frame({"type": "combat_timeout", "combat_session_id": FIGHT, "actor": ALICE, "timestamp": T0})
class CombatTimeout(_Positioned):
    """A player did not act in time: the turn is lost."""

    type: Literal["combat_timeout"]
    combat_session_id: Uuid
    actor: str
    timestamp: Timestamp


@server_frame({"type": "combat_end", "combat_session_id": FIGHT, "outcome": "victory", "timestamp": T0})
class CombatEnd(TypedDict):
    """The fight is over for you: its outcome, or `fled` when you got away (kept for later)."""

    type: Literal["combat_end"]
    combat_session_id: Uuid
    outcome: Literal["victory", "defeat", "fled"]
    timestamp: Timestamp


@server_frame(
    {"type": "combat_participant", "combat_session_id": FIGHT, "user_id": BOB, "event": "joined", "timestamp": T0}
)
class CombatParticipant(_Positioned):
    """A player joined, left, lost or regained their connection to the fight."""

    type: Literal["combat_participant"]
    combat_session_id: Uuid
    user_id: Uuid
    event: Literal["joined", "left", "disconnected", "reconnected"]
    timestamp: Timestamp


# --- /ws/world (§7) ---------------------------------------------------------------------------------


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
class ZoneChanged(_Reply):
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
class NearbyPlayers(_Reply):
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
class WorldEvent(_Positioned):
    """Something happened in a zone (or, with `zone` null, everywhere): a frame of the zones' streams."""

    type: Literal["world_event"]
    event: Annotated[str, Field(min_length=1, max_length=64)]
    message: Annotated[str, Field(max_length=1000)]
    zone: Annotated[str | None, Field(max_length=64)]
    timestamp: Timestamp


# --- which frames, where --------------------------------------------------------------------------

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
