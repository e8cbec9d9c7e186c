"""Chat (docs/protocol.md §5): messages to the four audiences, typing indicators and history pages.

Cost per message, whatever the audience size: one INSERT and one publish (private: a recipient
lookup, and a second publish for the sender's own connections). Who may send where is decided
from the sender's connection state (guild, party, mute), never from a per-message query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from realtime import groups, metrics
from realtime.features import offline
from realtime.models import ChatMessage
from realtime.models.chat import PERMANENT, conversation_key
from realtime.outages import REDIS, outages
from realtime.outbound import broadcast_to_channel, broadcast_to_stream, build_event
from realtime.protocol import ErrorCode, ProtocolError, iso_or_none, streams
from realtime.store import get_store

CHAT = frozenset({"chat"})
# CHAT_RATE_LIMIT counts messages per user in fixed windows of this length (docs/protocol.md §3).
RATE_WINDOW_SECONDS = 10.0
# At most one `is_typing: true` (and one `false`) per user and conversation in this time:
# clients repeat `true` about this often while the user types, receivers drop the indicator
# after about twice as long without one.
TYPING_THROTTLE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ChatSender:
    """What the chat needs to know about the user behind a connection (kept current live)."""

    user_id: str
    username: str
    guild_id: str | None
    party_id: str | None
    muted_until: datetime | None = None

    def muted(self, now: datetime | None = None) -> bool:
        return self.muted_until is not None and self.muted_until > (now or timezone.now())


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[dict[str, Any]]  # chat_message frames, oldest first
    has_more: bool


def public_until(until: datetime | None) -> str | None:
    """A sanction's end on the wire: ISO time, or null for a permanent one."""
    return None if until is None or until >= PERMANENT else iso_or_none(until)


# --- rules shared by messages, typing and history --------------------------------------------


def _check_not_muted(sender: ChatSender) -> None:
    if sender.muted():
        raise ProtocolError(ErrorCode.MUTED, "You are muted.", until=public_until(sender.muted_until))


def _scope_id(user: ChatSender, channel: str) -> str | None:
    """The guild or party id a guild/party channel means for this user; `forbidden` if none."""
    if channel not in ("guild", "party"):
        return None
    scope_id = user.guild_id if channel == "guild" else user.party_id
    if not scope_id:
        raise ProtocolError(ErrorCode.FORBIDDEN, f"You are not in a {channel}.", channel=channel)
    return scope_id


def _not_yourself(user: ChatSender, other: str | None) -> None:
    if other is not None and other == user.user_id:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A private conversation needs another user.")


async def _within_rate_limit(user_id: str) -> bool:
    limit = settings.CHAT_RATE_LIMIT
    if limit <= 0:
        return True
    try:
        return await get_store().hit(f"chat:{user_id}", limit, RATE_WINDOW_SECONDS)
    except Exception as exc:
        # Fail open: chat stays usable without the shared counter; the per-connection limit
        # holds. An outage is logged once (realtime/outages.py), not once per message.
        outages.failed(REDIS, exc)
        return True


async def _claim(key: str, ttl: float) -> bool:
    try:
        return await get_store().claim(key, ttl)
    except Exception as exc:
        outages.failed(REDIS, exc)
        return True


# --- messages ----------------------------------------------------------------------------


def chat_message_store(
    *, sender: ChatSender, channel: str, content: str, to: str | None, scope_id: str | None
) -> ChatMessage:
    """The one write of a message (private: after checking the recipient exists and is active)."""
    recipient_id = None
    if channel == "private":
        User = get_user_model()
        recipient_id = User.objects.filter(pk=to, is_active=True).values_list("pk", flat=True).first()
        if recipient_id is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "No such user.", to=to)
    return ChatMessage.objects.create(
        channel=channel,
        conversation=conversation_key(channel, scope_id=scope_id, user_a=sender.user_id, user_b=to),
        sender_id=sender.user_id,
        sender_name=sender.username,
        recipient_id=recipient_id,
        content=content,
        created_at=timezone.now(),
    )


chat_message_store_async = database_sync_to_async(chat_message_store)


async def chat_message_send(*, sender: ChatSender, channel: str, content: str, to: str | None = None) -> dict[str, Any]:
    """Check, store and deliver one message; returns the delivered `chat_message` frame.

    `content` is already trimmed and within limits (see `realtime.protocol.chat`).
    """
    _check_not_muted(sender)
    _not_yourself(sender, to)
    scope_id = _scope_id(sender, channel)
    if not await _within_rate_limit(sender.user_id):
        metrics.RATE_LIMITED.labels("chat", "chat").inc()
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            "Too many chat messages; slow down.",
            limit=settings.CHAT_RATE_LIMIT,
            window_seconds=int(RATE_WINDOW_SECONDS),
        )
    message = await chat_message_store_async(sender=sender, channel=channel, content=content, to=to, scope_id=scope_id)
    event = message.to_frame()
    if channel == "global":
        await broadcast_to_stream(streams.chat_global(), groups.chat_global(), event)
    elif channel in ("guild", "party"):
        await broadcast_to_stream(
            streams.chat_scope(channel, scope_id), groups.membership("chat", channel, scope_id), event
        )
    else:
        # The recipient's connections (kept for later if there are none), then the sender's own
        # chat connections: two per-user groups, so two publishes.
        await offline.send_personal(to, event, store_if_offline=True, ref=offline.chat_message_ref(message.message_id))
        await broadcast_to_channel(groups.user(sender.user_id), event, endpoints=CHAT)
    return event


# --- typing ------------------------------------------------------------------------------


async def chat_typing_send(*, sender: ChatSender, channel: str, is_typing: bool, to: str | None = None) -> bool:
    """Tell the rest of the audience that `sender` is (not) typing; False when throttled.

    Never stored, never sent to any of the sender's connections. A private indicator to an
    unknown user reaches nobody: checking would cost a query per keystroke burst.
    """
    _check_not_muted(sender)
    _not_yourself(sender, to)
    scope_id = _scope_id(sender, channel)
    conversation = conversation_key(channel, scope_id=scope_id, user_a=sender.user_id, user_b=to)
    if not await _claim(f"typing:{sender.user_id}:{conversation}:{int(is_typing)}", TYPING_THROTTLE_SECONDS):
        return False
    event = build_event("typing", user=sender.username, user_id=sender.user_id, channel=channel, is_typing=is_typing)
    if channel == "global":
        await broadcast_to_channel(groups.chat_global(), event, exclude_user=sender.user_id)
    elif channel in ("guild", "party"):
        await broadcast_to_channel(groups.membership("chat", channel, scope_id), event, exclude_user=sender.user_id)
    else:
        await broadcast_to_channel(groups.user(to), event, endpoints=CHAT)
    return True


# --- history -----------------------------------------------------------------------------


def chat_history_page(
    *, reader: ChatSender, channel: str, limit: int, before: str | None = None, with_user: str | None = None
) -> HistoryPage:
    """The newest `limit` visible messages older than `before`, oldest first (keyset paging).

    `guild`/`party` mean the reader's current ones; `private` the reader's conversation with
    `with_user`. `before` must be a message of the same conversation (deleted ones still work
    as a cursor, so a page boundary never breaks).
    """
    scope_id = _scope_id(reader, channel)
    if channel == "private":
        _not_yourself(reader, with_user)
        User = get_user_model()
        # A deactivated account answers exactly like a deleted one: telling them apart would let
        # anyone probe which accounts exist (docs/protocol.md §5).
        if not User.objects.filter(pk=with_user, is_active=True).exists():
            raise ProtocolError(ErrorCode.NOT_FOUND, "No such user.", **{"with": with_user})
    conversation = conversation_key(channel, scope_id=scope_id, user_a=reader.user_id, user_b=with_user)
    visible = ChatMessage.objects.filter(conversation=conversation, deleted_at=None)
    if before is not None:
        cursor = (
            ChatMessage.objects.filter(message_id=before, conversation=conversation)
            .values_list("id", flat=True)
            .first()
        )
        if cursor is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "No such message in this channel.", before=before)
        visible = visible.filter(id__lt=cursor)
    rows = list(visible.order_by("-id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return HistoryPage(messages=[row.to_frame() for row in rows], has_more=has_more)


chat_history_page_async = database_sync_to_async(chat_history_page)


# --- retention ---------------------------------------------------------------------------

PRUNE_BATCH = 5000  # rows per DELETE, so pruning never holds long locks


def chat_history_prune(*, older_than_days: float) -> int:
    """Delete messages (deleted or not) older than `older_than_days`; returns how many."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    while True:
        ids = list(ChatMessage.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:PRUNE_BATCH])
        if not ids:
            return total
        deleted, _ = ChatMessage.objects.filter(id__in=ids).delete()
        total += deleted
