"""Stored state of the connection registry and offline deliveries."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Instance(models.Model):
    """A server process. `last_seen` is refreshed every cleanup interval; a stale one is dead."""

    id = models.CharField(primary_key=True, max_length=200)
    host = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)
    connections = models.IntegerField(default=0, help_text="Open connections at the last refresh.")
    draining = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Connection(models.Model):
    """One open WebSocket, as recorded by the instance that holds it (written in batches)."""

    id = models.CharField(primary_key=True, max_length=64)
    instance_id = models.CharField(max_length=200, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    username = models.CharField(max_length=150, blank=True)
    endpoint = models.CharField(max_length=16, db_index=True)
    client_addr = models.CharField(max_length=64, blank=True)
    connected_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    frames_in = models.BigIntegerField(default=0)
    frames_out = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-connected_at"]
        verbose_name = "live connection"

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.id}"


class PendingDelivery(models.Model):
    """A personal event kept for a user who had no connection able to receive it (§9).

    Claimed by exactly one connection with an atomic UPDATE, and marked delivered only after
    the frame was handed to that connection's socket.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pending_deliveries")
    event_type = models.CharField(max_length=64)
    frame = models.TextField(help_text="The encoded event frame, exactly as it will be sent.")
    endpoints = models.CharField(max_length=64, help_text="Comma-separated endpoints that carry it; empty = any.")
    # What the event is about (e.g. "chat_message:<id>"), so that a later change can withdraw
    # it before delivery: a deleted private message must not reach its recipient afterwards.
    ref = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    claimed_by = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL = unclaimed
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user", "delivered_at", "id"], name="pending_user_undelivered")]
        verbose_name_plural = "pending deliveries"

    def __str__(self) -> str:
        return f"{self.event_type} for {self.user_id}"
