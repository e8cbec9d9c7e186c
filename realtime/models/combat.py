"""Stored combat: sessions (the engine's state plus the columns the referee needs), who takes
part, the full log, and each player's combat stats."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from realtime.protocol.catalogue import PLAYER_DEFAULT


class PlayerCombatStats(models.Model):
    """A player's fighting stats; created with the defaults on the first fight, editable in the admin."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="combat_stats"
    )
    max_hp = models.PositiveSmallIntegerField(default=PLAYER_DEFAULT.max_hp)
    attack = models.PositiveSmallIntegerField(default=PLAYER_DEFAULT.attack)
    defence = models.PositiveSmallIntegerField(default=PLAYER_DEFAULT.defence)
    speed = models.PositiveSmallIntegerField(default=PLAYER_DEFAULT.speed)

    class Meta:
        verbose_name_plural = "player combat stats"

    def __str__(self) -> str:
        return f"combat stats of {self.user_id}"


class CombatSession(models.Model):
    """One fight. `turn` counts applied steps: every change is `UPDATE … WHERE turn = <read>`."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        VICTORY = "victory"
        DEFEAT = "defeat"
        FLED = "fled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    seed = models.BigIntegerField(help_text="Every random draw of the fight derives from it.")
    round = models.PositiveIntegerField(default=1)
    turn = models.PositiveIntegerField(default=0, help_text="Steps applied so far (compare-and-set version).")
    actor = models.CharField(max_length=64, blank=True, help_text="Whose turn it is (empty once over).")
    deadline = models.DateTimeField(null=True, blank=True, help_text="When the current player's turn times out.")
    idle_timeouts = models.PositiveSmallIntegerField(
        default=0, help_text="Consecutive timeouts with no player connected."
    )
    initial_state = models.JSONField(help_text="The state before the first step: where a replay starts.")
    state = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The timer sweep asks for active sessions whose deadline has passed.
        indexes = [models.Index(fields=["status", "deadline"], name="combat_session_due")]

    def __str__(self) -> str:
        return f"combat {self.id} ({self.status})"


class CombatParticipant(models.Model):
    """A player in a fight. `active` until they flee or the fight ends; one active fight per user."""

    session = models.ForeignKey(CombatSession, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="combat_participations")
    active = models.BooleanField(default=True)
    connected = models.BooleanField(default=True, help_text="Has a /ws/combat connection, as last announced.")
    joined_at = models.DateTimeField(default=timezone.now)
    left_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            # The database, not a check in Python, keeps a player in at most one running fight:
            # two starts racing on two instances cannot both insert an active row.
            models.UniqueConstraint(fields=["user"], condition=Q(active=True), name="combat_one_active_fight_per_user"),
            models.UniqueConstraint(fields=["session", "user"], name="combat_participant_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.session_id}"


class CombatLogEntry(models.Model):
    """One step's event (action, timeout, departure, end) or a connection change, in order."""

    session = models.ForeignKey(CombatSession, on_delete=models.CASCADE, related_name="log")
    turn = models.PositiveIntegerField()
    round = models.PositiveIntegerField()
    kind = models.CharField(max_length=16)
    actor = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=16, blank=True)
    target = models.CharField(max_length=64, blank=True)
    damage = models.IntegerField(null=True, blank=True)
    target_hp = models.IntegerField(null=True, blank=True)
    event = models.JSONField(help_text="The engine's event exactly as produced (what a replay compares).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "combat log entries"

    def __str__(self) -> str:
        return f"{self.kind} turn {self.turn}"
