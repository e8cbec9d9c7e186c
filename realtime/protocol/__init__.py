"""Names on the wire (docs/protocol.md §1–§3): error codes, close codes, the envelope and its encoding.

Endpoint-specific message schemas live next to this module (`chat.py`, `combat.py`, ...), so every
name a client sees is defined in this package and nowhere else.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The wire protocol this server speaks (`connection_established.protocol`). A minor version only
# adds (message types, fields, close codes); clients ignore what they do not know.
PROTOCOL_VERSION = "1.1"


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    KICKED = "kicked"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    MUTED = "muted"
    NOT_YOUR_TURN = "not_your_turn"
    INVALID_ACTION = "invalid_action"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SLOW_CONSUMER = "slow_consumer"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    SERVER_SHUTTING_DOWN = "server_shutting_down"
    UNAVAILABLE = "unavailable"  # a backing service (database, Redis) failed; retry later
    INTERNAL_ERROR = "internal_error"


class CloseCode(enum.IntEnum):
    GOING_AWAY = 1001  # server shutdown or drain: reconnect, possibly to another instance
    UNAUTHORIZED = 4401  # token missing, invalid or expired
    FORBIDDEN = 4403  # banned or kicked by a moderator
    HEARTBEAT_TIMEOUT = 4408  # silent for longer than WEBSOCKET_CONNECTION_TIMEOUT
    SLOW_CONSUMER = 4413  # the client stopped reading; too much unsent data piled up
    RATE_LIMIT_ABUSE = 4429  # kept sending past the rate limit, or over a connection cap
    # A backing service failed while connecting (error `unavailable`): retry with backoff.
    # (1013 "try again later" would say the same, but servers may only send 1000 or 3000-4999.)
    UNAVAILABLE = 4503


class ProtocolError(Exception):
    """A client-visible failure: becomes an `error` frame, the connection stays open."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or None


class ClientFrame(BaseModel):
    """Base of every client message schema: unknown fields are ignored, types are strict."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


MAX_ID_LENGTH = 64


class PingIn(ClientFrame):
    """Answered with `pong` (and the frame's `id`): measures latency."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "ping", "id": 7}]})


class PongIn(ClientFrame):
    """The answer to the server's `ping`; nothing comes back."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "pong"}]})


class TokenRefreshIn(ClientFrame):
    """Keep an open connection alive past its token's expiry, without reconnecting.

    `{"type": "token_refresh", "token": "<new access token>"}`
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "token_refresh", "token": "<new access token>", "id": 9}]}
    )

    token: str = Field(min_length=1, max_length=4096, description="A new access token of the same user.")


def now_iso(moment: datetime | None = None) -> str:
    """ISO 8601, UTC, millisecond precision, `Z` suffix (docs/protocol.md §2)."""
    moment = moment or datetime.now(UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_or_none(moment: datetime | None) -> str | None:
    return now_iso(moment) if moment is not None else None


def encode(frame: dict[str, Any]) -> str:
    """Serialise a frame once; the text is then shared by every recipient."""
    try:
        return orjson.dumps(frame).decode()
    except TypeError:  # an integer wider than 64 bits (a client's echoed `id`): orjson refuses it
        return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(text: bytes | str) -> Any:
    """Parse client JSON. orjson refuses NaN/Infinity and nesting deeper than 1024 levels."""
    return orjson.loads(text)


def exact_frame_id(text: bytes | str, value: Any) -> Any:
    """orjson reads integers wider than 64 bits as floats; §2 allows any integer `id` of up to
    64 digits, so re-read such an `id` exactly (rare: only when the parsed `id` is a float)."""
    if not isinstance(value, float):
        return value
    try:
        exact = json.loads(text).get("id")
    except (ValueError, AttributeError):
        return value
    return exact if isinstance(exact, int) else value


def with_id(text: str, frame_id: Any) -> str:
    """An encoded frame with the client's `id` added as its last field (None: unchanged)."""
    if frame_id is None:
        return text
    return f'{text[:-1]},"id":{encode({"id": frame_id})[6:-1]}}}'


def error_frame(code: ErrorCode, message: str, frame_id: Any = None, details: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    if details:
        frame["details"] = details
    return frame


def valid_frame_id(value: Any) -> bool:
    """`id` is a string or an integer of at most 64 characters (docs/protocol.md §2)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    if isinstance(value, int):
        return len(str(value)) <= MAX_ID_LENGTH
    return False


def validation_details(error: ValidationError) -> list[dict[str, str]]:
    """Field-level reasons without echoing the (possibly huge or hostile) input back."""
    details = []
    for item in error.errors(include_url=False, include_input=False, include_context=False)[:10]:
        location = ".".join(str(part) for part in item["loc"]) or "(frame)"
        details.append({"field": location, "problem": item["msg"]})
    return details


# Which endpoints carry which server event types: personal messages (user groups reach every
# endpoint) are filtered by this, and offline deliveries wait for an endpoint that carries them.
EVENT_ENDPOINTS: dict[str, frozenset[str]] = {
    "player_status": frozenset({"game"}),
    "membership_changed": frozenset({"game"}),
    "invitation": frozenset({"game"}),
    "achievement": frozenset({"game"}),
    "system_announcement": frozenset({"game"}),
    "game_state": frozenset({"game"}),
    "chat_message": frozenset({"chat"}),
    "typing": frozenset({"chat"}),
    "moderation_event": frozenset({"chat"}),
    "moderation_notice": frozenset({"chat", "game"}),
    "combat_state": frozenset({"combat"}),
    "combat_action_result": frozenset({"combat"}),
    "combat_timeout": frozenset({"combat"}),
    "combat_end": frozenset({"combat"}),
    "combat_participant": frozenset({"combat"}),
    "player_movement": frozenset({"world"}),
    "player_entered": frozenset({"world"}),
    "player_left": frozenset({"world"}),
    "world_event": frozenset({"world"}),
}

ENDPOINTS = ("game", "chat", "combat", "world")

# Every message type the protocol defines, client frames and server frames alike.
PROTOCOL_TYPES = frozenset(EVENT_ENDPOINTS) | {
    "connection_established", "error", "ping", "pong", "ack", "token_refresh", "token_refreshed",
    "resume", "resumed", "set_status", "history_request", "history", "moderation", "moderation_notice",
    "membership_changed", "invitation", "combat_start", "combat_action", "combat_state_request",
    "zone_change", "zone_changed", "player_movement", "nearby_players_request", "nearby_players",
}  # fmt: skip
# What the publish API may send of them (docs/protocol.md §8); the others are the server's own,
# and so are the fields a client trusts to come from the server alone.
PUBLISHABLE_TYPES = frozenset({"system_announcement", "game_state", "achievement", "world_event"})
RESERVED_FIELDS = frozenset({"id", "stream", "offset", "epoch"})


def endpoints_for(event_type: str) -> frozenset[str] | None:
    """Endpoints that carry `event_type`; None means every endpoint (custom published types)."""
    return EVENT_ENDPOINTS.get(event_type)
