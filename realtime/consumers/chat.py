"""`/ws/chat`: global, guild, party and private chat, typing, history, moderation (PROTOCOL §5)."""

from __future__ import annotations

from collections.abc import Iterable

from realtime import groups
from realtime.consumers.base import BaseConsumer


class ChatConsumer(BaseConsumer):
    endpoint = "chat"
    requires_auth = True
    membership_scopes = ("guild", "party")

    def initial_groups(self) -> Iterable[str]:
        return [groups.chat_global()]
