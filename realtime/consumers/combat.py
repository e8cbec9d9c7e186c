"""`/ws/combat`: authoritative turn-based combat (PROTOCOL §6)."""

from __future__ import annotations

from realtime.consumers.base import BaseConsumer


class CombatConsumer(BaseConsumer):
    endpoint = "combat"
    requires_auth = True
