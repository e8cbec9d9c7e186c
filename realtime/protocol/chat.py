"""Client frames of `/ws/chat` (docs/protocol.md §5): every field a chat client may send, checked strictly."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from realtime.protocol import ClientFrame
from realtime.protocol.text import visible_text

CHANNELS = ("global", "guild", "party", "private")
Channel = Literal["global", "guild", "party", "private"]

MAX_CONTENT_LENGTH = 500  # characters after trimming (docs/protocol.md §5)
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 100
MAX_REASON_LENGTH = 500
# Ten years: long enough for any timed sanction, short enough that `now + duration` never
# overflows a database timestamp. Leave the duration out for a permanent one.
MAX_DURATION_SECONDS = 10 * 365 * 24 * 3600

MODERATION_ACTIONS = ("mute", "unmute", "ban", "unban", "kick", "delete_message")
USER_ACTIONS = frozenset({"mute", "unmute", "ban", "unban", "kick"})


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


Uuid = Annotated[str, AfterValidator(_uuid)]
Content = Annotated[str, AfterValidator(_content)]


class _Addressed(ClientFrame):
    """A frame aimed at a channel; `to` names the other user of a private conversation."""

    channel: Channel
    to: Uuid | None = None

    @model_validator(mode="after")
    def _to_only_for_private(self) -> _Addressed:
        if self.channel == "private" and self.to is None:
            raise ValueError("private messages need 'to' (the recipient's user id)")
        if self.channel != "private" and self.to is not None:
            raise ValueError("'to' is only for the private channel")
        return self


class ChatMessageIn(_Addressed):
    """`{"type": "chat_message", "channel": "global", "content": "Hello", "to": null}`"""

    content: Content


class TypingIn(_Addressed):
    """`{"type": "typing", "channel": "party", "is_typing": true}`"""

    is_typing: bool


class HistoryRequestIn(ClientFrame):
    """`{"type": "history_request", "channel": "global", "limit": 50, "before": "<id>", "with": "<uuid>"}`"""

    channel: Channel
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
    """`{"type": "moderation", "action": "mute", "user_id": "<uuid>", "duration_seconds": 600, "reason": "spam"}`"""

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
