"""`/ws/game`: player status, achievements, system announcements, game state (PROTOCOL §4)."""

from __future__ import annotations

from collections.abc import Iterable

from realtime import groups
from realtime.consumers.base import BaseConsumer


class GameConsumer(BaseConsumer):
    endpoint = "game"
    requires_auth = False
    membership_scopes = ("guild", "party")

    def initial_groups(self) -> Iterable[str]:
        return [groups.game_all()]
