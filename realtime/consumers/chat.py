"""`/ws/chat`: global, guild, party and private chat, typing, history, moderation (docs/protocol.md §5).

Thin: each handler turns a validated frame into one service call. Frames sent with an `id` get
a direct reply (`ack`, or `history`); the broadcast itself is the confirmation otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from realtime import groups
from realtime.consumers.base import BaseConsumer, handles
from realtime.features import chat, moderation
from realtime.protocol import ErrorCode, ProtocolError, now_iso
from realtime.protocol.chat import ChatMessageIn, HistoryRequestIn, ModerationIn, TypingIn


class ChatConsumer(BaseConsumer):
    endpoint = "chat"
    requires_auth = True

    def initial_groups(self) -> Iterable[str]:
        return [groups.chat_global()]

    def chat_sender(self) -> chat.ChatSender:
        """The user as chat sees it: connection state, kept current by membership and moderation controls."""
        user = self.user
        return chat.ChatSender(
            user_id=user.id,
            username=user.username,
            guild_id=user.guild_id,
            party_id=user.party_id,
            muted_until=user.muted_until,
        )

    @handles("chat_message", ChatMessageIn)
    async def on_chat_message(self, message: ChatMessageIn, frame_id: Any) -> dict[str, Any] | None:
        event = await chat.chat_message_send(
            sender=self.chat_sender(), channel=message.channel, content=message.content, to=message.to
        )
        if frame_id is None:
            return None
        return {"type": "ack", "message_id": event["message_id"], "timestamp": event["timestamp"]}

    @handles("typing", TypingIn)
    async def on_typing(self, message: TypingIn, frame_id: Any) -> dict[str, Any] | None:
        await chat.chat_typing_send(
            sender=self.chat_sender(), channel=message.channel, is_typing=message.is_typing, to=message.to
        )
        return {"type": "ack", "timestamp": now_iso()} if frame_id is not None else None

    @handles("history_request", HistoryRequestIn)
    async def on_history_request(self, message: HistoryRequestIn, frame_id: Any) -> dict[str, Any]:
        page = await chat.chat_history_page_async(
            reader=self.chat_sender(),
            channel=message.channel,
            limit=message.page_size,
            before=message.before,
            with_user=message.with_user,
        )
        reply = {"type": "history", "channel": message.channel, "messages": page.messages, "has_more": page.has_more}
        if message.with_user is not None:
            reply["with"] = message.with_user
        return reply

    @handles("moderation", ModerationIn)
    async def on_moderation(self, message: ModerationIn, frame_id: Any) -> dict[str, Any] | None:
        if not self.user.can_moderate:
            # Cheap refusal from connection state; the service re-checks the role in the database.
            raise ProtocolError(ErrorCode.FORBIDDEN, "Only moderators and staff can moderate.")
        outcome = await moderation.moderation_apply(
            moderator_id=self.user.id,
            action=message.action,
            user_id=message.user_id,
            message_id=message.message_id,
            duration_seconds=message.duration_seconds,
            reason=message.reason,
        )
        if frame_id is None:
            return None
        return {"type": "ack", **outcome.event_fields(), "timestamp": now_iso()}
