"""`/ws/game`: player status, achievements, system announcements, game state (docs/protocol.md §4).

Presence (`online`/`offline`) is the base consumer's; this endpoint adds `set_status`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from realtime import groups
from realtime.consumers.base import BaseConsumer, handles
from realtime.features import game
from realtime.protocol.game import SetStatusIn


class GameConsumer(BaseConsumer):
    endpoint = "game"
    requires_auth = False

    def initial_groups(self) -> Iterable[str]:
        return [groups.game_all()]

    @handles("set_status", SetStatusIn)
    async def on_set_status(self, message: SetStatusIn, frame_id: Any) -> dict[str, Any] | None:
        user = self.user
        await game.status_set(
            user_id=user.id,
            username=user.username,
            status=message.status,
            guild_id=user.guild_id,
            party_id=user.party_id,
        )
        # The player's own connections get `player_status` as confirmation; an id asks for an ack.
        return {"type": "ack"} if frame_id is not None else None
