"""Frames every endpoint sends (docs/protocol.md §1–§3, §12)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from realtime.protocol import ErrorCode
from realtime.protocol.events.shapes import (
    ALICE,
    GUILD,
    MESSAGE,
    T0,
    Endpoint,
    FieldProblem,
    FrameId,
    ModerationAction,
    ReplyMixin,
    StreamNotRecovered,
    StreamPosition,
    StreamRecovered,
    Timestamp,
    UserRef,
    Uuid,
    server_frame,
)


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
class ErrorFrame(ReplyMixin):
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
class Pong(ReplyMixin):
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
class TokenRefreshed(ReplyMixin):
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
class Resumed(ReplyMixin):
    """The answer to `resume`, after the replayed frames (docs/protocol.md §12)."""

    type: Literal["resumed"]
    streams: dict[str, StreamRecovered | StreamNotRecovered]
    timestamp: Timestamp
