"""Stored state of the real-time system, one module per feature; Django finds them here."""

from realtime.models.chat import ChatMessage, ModerationAction
from realtime.models.combat import CombatLogEntry, CombatParticipant, CombatSession, PlayerCombatStats
from realtime.models.operations import OutboxMessage, Publication
from realtime.models.registry import Connection, Instance, PendingDelivery
from realtime.models.world import Zone

__all__ = [
    "ChatMessage",
    "CombatLogEntry",
    "CombatParticipant",
    "CombatSession",
    "Connection",
    "Instance",
    "ModerationAction",
    "OutboxMessage",
    "PendingDelivery",
    "PlayerCombatStats",
    "Publication",
    "Zone",
]
