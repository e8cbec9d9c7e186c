"""The player account (UUID primary key, moderator flag, moderation state), guilds and parties."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class Guild(models.Model):
    """A long-lived player organisation; a user belongs to at most one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Party(models.Model):
    """A short-lived adventuring group; a user belongs to at most one, it ends when empty."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64)
    leader = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "parties"

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A player. `banned_until`/`muted_until` in the past mean the sanction has expired."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    is_moderator = models.BooleanField(default=False, help_text="May moderate chat without being staff.")
    guild = models.ForeignKey(Guild, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    party = models.ForeignKey(Party, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    banned_until = models.DateTimeField(null=True, blank=True)
    muted_until = models.DateTimeField(null=True, blank=True)
    # Set when an offline delivery is stored, cleared once none is left: lets a connect
    # skip the pending-delivery query in the common case (one database round trip).
    has_pending_deliveries = models.BooleanField(default=False)

    @property
    def can_moderate(self) -> bool:
        return self.is_staff or self.is_moderator

    def is_banned(self, now=None) -> bool:
        return self.banned_until is not None and self.banned_until > (now or timezone.now())
