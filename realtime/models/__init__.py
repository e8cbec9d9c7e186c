"""Stored state of the real-time system, one module per feature; Django finds them here."""

from realtime.models.registry import Connection, Instance, PendingDelivery
from realtime.models.world import Zone

__all__ = ["Connection", "Instance", "PendingDelivery", "Zone"]
