"""Stored chat: every message sent on `/ws/chat`, and the log of every moderation action."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from realtime.protocol import now_iso

# A permanent mute or ban is stored as this `muted_until` / `banned_until`, so every check stays
# the plain `until > now` the middleware and the connection state already use.
PERMANENT = datetime(9999, 12, 31, tzinfo=UTC)


def conversation_key(channel: str, *, scope_id: Any = None, user_a: Any = None, user_b: Any = None) -> str:
    """One string per conversation, so one index serves every history query.

    `global`, `guild:<id>`, `party:<id>`, `private:<lower uuid>:<higher uuid>` (either direction).
    """
    if channel == "global":
        return "global"
    if channel in ("guild", "party"):
        return f"{channel}:{scope_id}"
    low, high = sorted((str(user_a), str(user_b)))
    return f"private:{low}:{high}"


class ChatMessage(models.Model):
    """One chat message. `id` orders history (keyset pages); `message_id` is the public id."""

    class Channel(models.TextChoices):
        GLOBAL = "global"
        GUILD = "guild"
        PARTY = "party"
        PRIVATE = "private"

    id = models.BigAutoField(primary_key=True)
    message_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    conversation = models.CharField(max_length=90, help_text="global, guild:<id>, party:<id> or private:<a>:<b>")
    # Messages go with their author's account; the moderation log keeps names, not rows.
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    sender_name = models.CharField(max_length=150, help_text="The author's username when it was sent.")
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    content = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # History pages: WHERE conversation = %s AND id < %s ORDER BY id DESC LIMIT n,
            # over visible messages only.
            models.Index(fields=["conversation", "-id"], condition=Q(deleted_at=None), name="chat_history"),
            models.Index(fields=["created_at"], name="chat_created"),  # pruning
            models.Index(fields=["sender", "-id"], name="chat_sender"),  # admin: a user's messages
        ]

    def __str__(self) -> str:
        return f"{self.sender_name} in {self.channel}: {self.content[:40]}"

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def to_frame(self) -> dict[str, Any]:
        """The `chat_message` event exactly as it is delivered live (docs/protocol.md §5)."""
        return {
            "type": "chat_message",
            "message_id": str(self.message_id),
            "user": self.sender_name,
            "user_id": str(self.sender_id),
            "content": self.content,
            "channel": self.channel,
            "to": str(self.recipient_id) if self.recipient_id else None,
            "timestamp": now_iso(self.created_at),
        }


class ModerationAction(models.Model):
    """Who did what to whom, why and until when. Written once, never changed."""

    class Action(models.TextChoices):
        MUTE = "mute"
        UNMUTE = "unmute"
        BAN = "ban"
        UNBAN = "unban"
        KICK = "kick"
        DELETE_MESSAGE = "delete_message"

    class Via(models.TextChoices):
        SOCKET = "socket"
        ADMIN = "admin"

    action = models.CharField(max_length=16, choices=Action.choices)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moderator_name = models.CharField(max_length=150)
    target = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    target_name = models.CharField(max_length=150, blank=True)
    message_id = models.UUIDField(null=True, blank=True, help_text="The deleted message (delete_message).")
    reason = models.CharField(max_length=500, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="End of a mute or ban; empty = permanent or n/a.")
    via = models.CharField(max_length=8, choices=Via.choices, default=Via.SOCKET)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["target", "-id"], name="moderation_target")]

    def __str__(self) -> str:
        return f"{self.moderator_name} {self.action} {self.target_name or self.message_id}"

    @property
    def permanent(self) -> bool:
        return self.action in (self.Action.MUTE, self.Action.BAN) and self.until is None
