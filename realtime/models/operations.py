"""Stored state of operations: the outbox that carries sends from other processes in embedded mode."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    """A channel-layer group message written by a process that cannot reach the server's layer.

    Only used without Redis: the in-memory layer lives inside the one server process, so a
    management command (or a shell) writes here and the server hands the message to its layer.
    """

    group = models.CharField(max_length=100)
    message = models.TextField(help_text="The channel-layer message, JSON encoded.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # A personal event (it must reach the user live or be kept, never dropped): handed to the
    # server whenever it runs, however old, instead of expiring like a broadcast.
    durable = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.group} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class Publication(models.Model):
    """An event published through `POST /api/v1/websocket/publish` (docs/protocol.md §8).

    Nothing is stored: the model exists to carry the permission the route needs, so operators
    grant it to staff accounts (or groups) in the admin like any other.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("publish_event", "Can publish events to players (the publish API)")]

    def __str__(self) -> str:
        return "publication"
