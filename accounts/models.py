"""The player account (UUID primary key, moderator flag, moderation state), guilds, parties and invitations."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

# How long an invitation to a guild or party can be used (docs/protocol.md §8): long enough for a
# player who is away for a few days, short enough that old ones do not pile up.
INVITATION_LIFETIME = timedelta(days=7)

GUILD = "guild"
PARTY = "party"


class Guild(models.Model):
    """A long-lived player organisation; a user belongs to at most one.

    Invitation-only unless `open`: its leader invites, the invited join (docs/protocol.md §8).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64, unique=True)
    open = models.BooleanField(default=False, help_text="Anyone may join; otherwise only invited players.")
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    leader = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    kind = GUILD

    def __str__(self) -> str:
        return self.name


class Party(models.Model):
    """A short-lived adventuring group; a user belongs to at most one, it ends when empty.

    Invitation-only unless `open`, like guilds.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64)
    open = models.BooleanField(default=False, help_text="Anyone may join; otherwise only invited players.")
    leader = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    kind = PARTY

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


class Invitation(models.Model):
    """A leader's invitation of one player to a guild or a party.

    Joining uses it up; it lapses after `INVITATION_LIFETIME` and goes with its group.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    guild = models.ForeignKey(Guild, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations")
    party = models.ForeignKey(Party, null=True, blank=True, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invitations")
    invited_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(guild__isnull=False, party__isnull=True)
                | models.Q(guild__isnull=True, party__isnull=False),
                name="invitation_to_one_group",
            ),
            # One invitation per player and group: inviting again renews it.
            models.UniqueConstraint(
                fields=["guild", "invitee"], condition=models.Q(guild__isnull=False), name="one_invitation_per_guild"
            ),
            models.UniqueConstraint(
                fields=["party", "invitee"], condition=models.Q(party__isnull=False), name="one_invitation_per_party"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invitee} to {self.kind} {self.group}"

    @property
    def kind(self) -> str:
        return GUILD if self.guild_id is not None else PARTY

    @property
    def group(self) -> Guild | Party:
        group = self.guild if self.guild_id is not None else self.party
        assert group is not None  # the check constraint
        return group
