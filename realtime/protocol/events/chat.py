"""Frames of /ws/chat (docs/protocol.md §5)."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from realtime.protocol.chat import ChatChannel
from realtime.protocol.events.shapes import (
    ALICE,
    BOB,
    MESSAGE,
    T0,
    FrameId,
    ModerationAction,
    PositionedMixin,
    Timestamp,
    Uuid,
    server_frame,
)


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
class ChatMessage(PositionedMixin):
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
class ModerationEvent(_Moderation, PositionedMixin):
    """A moderator acted; to every chat connection, a frame of the `chat:global` stream."""

    type: Literal["moderation_event"]


@server_frame({"type": "moderation_notice", **MODERATION_EXAMPLE})
class ModerationNotice(_Moderation):
    """A moderator acted on you (kept for later, except a kick)."""

    type: Literal["moderation_notice"]
