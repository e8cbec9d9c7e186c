"""Client frames of `/ws/chat` (docs/protocol.md §5): every field a chat client may send, checked strictly."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator
from typing_extensions import TypeAliasType

from realtime.protocol import ClientFrame
from realtime.protocol.text import visible_text

CHANNELS = ("global", "guild", "party", "private")
ChatChannel = TypeAliasType("ChatChannel", Literal["global", "guild", "party", "private"])

MAX_CONTENT_LENGTH = 500  # characters after trimming (docs/protocol.md §5)
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 100
MAX_REASON_LENGTH = 500
# Ten years: long enough for any timed sanction, short enough that `now + duration` never
# overflows a database timestamp. Leave the duration out for a permanent one.
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600

MODERATION_ACTIONS = ("mute", "unmute", "ban", "unban", "kick", "delete_message")
USER_ACTIONS = frozenset({"mute", "unmute", "ban", "unban", "kick"})

# For the examples of the published schema (docs/asyncapi.json).
BOB = "0d8e3c1a-5b7f-4c2e-9a64-3f1b2c4d5e6f"
MESSAGE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def _uuid(value: str) -> str:
    """A UUID in any of the usual spellings, returned canonical (lower case, hyphens)."""
    if len(value) > 45:
        raise ValueError("must be a UUID")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError("must be a UUID") from None


def _content(value: str) -> str:
    # The rule every text shown to other players follows (realtime/protocol/text.py): no
    # bidirectional overrides, no control characters but tab and newline, something visible.
    value = visible_text(value, multiline=True)
    if len(value) > MAX_CONTENT_LENGTH:
        raise ValueError(f"must be at most {MAX_CONTENT_LENGTH} characters after trimming")
    return value


def _reason(value: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_REASON_LENGTH:
        raise ValueError(f"must be at most {MAX_REASON_LENGTH} characters")
    return value or None


Uuid = Annotated[
    str,
    AfterValidator(_uuid),
    WithJsonSchema({"type": "string", "maxLength": 45, "description": "A UUID, in any of the usual spellings."}),
]
Content = Annotated[
    str,
    AfterValidator(_content),
    Field(description="1–500 characters after trimming, showing something (docs/protocol.md §5)."),
]


class _Addressed(ClientFrame):
    """A frame aimed at a channel; `to` names the other user of a private conversation."""

    channel: ChatChannel
    to: Uuid | None = None

    @model_validator(mode="after")
    def _to_only_for_private(self) -> _Addressed:
        if self.channel == "private" and self.to is None:
            raise ValueError("private messages need 'to' (the recipient's user id)")
        if self.channel != "private" and self.to is not None:
            raise ValueError("'to' is only for the private channel")
        return self


class ChatMessageIn(_Addressed):
    """Send a chat message to a channel (`to`: the recipient, on `private` only).

    `{"type": "chat_message", "channel": "global", "content": "Hello", "to": null}`
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "chat_message", "channel": "global", "content": "Hello world!", "id": "m-1"},
                {"type": "chat_message", "channel": "private", "content": "psst", "to": BOB},
            ]
        }
    )

    content: Content


class TypingIn(_Addressed):
    """Started or stopped typing in a conversation; repeat `true` about every 3 s while it goes on.

    `{"type": "typing", "channel": "party", "is_typing": true}`
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "typing", "channel": "private", "to": BOB, "is_typing": True}]}
    )

    is_typing: bool


class HistoryRequestIn(ClientFrame):
    """Ask for earlier messages of a conversation, a page at a time (`before`: the oldest seen).

    `{"type": "history_request", "channel": "global", "limit": 50, "before": "<id>", "with": "<uuid>"}`
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "history_request", "channel": "global", "limit": 50, "id": "h-1"},
                {"type": "history_request", "channel": "private", "with": BOB, "before": MESSAGE, "id": "h-3"},
            ]
        }
    )

    channel: ChatChannel
    limit: int = Field(HISTORY_DEFAULT_LIMIT, ge=1)
    before: Uuid | None = None
    with_user: Uuid | None = Field(None, alias="with")

    @model_validator(mode="after")
    def _with_only_for_private(self) -> HistoryRequestIn:
        if self.channel == "private" and self.with_user is None:
            raise ValueError("private history needs 'with' (the other user's id)")
        if self.channel != "private" and self.with_user is not None:
            raise ValueError("'with' is only for the private channel")
        return self

    @property
    def page_size(self) -> int:
        # Larger requests are served, capped, rather than refused: a client asking for "a lot"
        # gets the most we give and `has_more` tells it to page on.
        return min(self.limit, HISTORY_MAX_LIMIT)


class ModerationIn(ClientFrame):
    """A moderator's action on a player or a message (moderators and staff only).

    `{"type": "moderation", "action": "mute", "user_id": "<uuid>", "duration_seconds": 600, "reason": "spam"}`
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "moderation", "action": "mute", "user_id": BOB, "duration_seconds": 600, "reason": "spam"},
                {"type": "moderation", "action": "delete_message", "message_id": MESSAGE, "reason": "rude"},
            ]
        }
    )

    action: Literal["mute", "unmute", "ban", "unban", "kick", "delete_message"]
    user_id: Uuid | None = None
    message_id: Uuid | None = None
    duration_seconds: float | None = Field(None, gt=0, le=MAX_DURATION_SECONDS)
    reason: Annotated[str, AfterValidator(_reason)] | None = None

    @model_validator(mode="after")
    def _target_present(self) -> ModerationIn:
        if self.action in USER_ACTIONS and self.user_id is None:
            raise ValueError(f"'{self.action}' needs 'user_id'")
        if self.action == "delete_message" and self.message_id is None:
            raise ValueError("'delete_message' needs 'message_id'")
        return self
