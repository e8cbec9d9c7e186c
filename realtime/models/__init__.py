"""Stored state of the real-time system, one module per feature; Django finds them here."""

from realtime.models.operations import OutboxMessage
from realtime.models.registry import Connection, Instance, PendingDelivery

__all__ = ["Connection", "Instance", "OutboxMessage", "PendingDelivery"]
