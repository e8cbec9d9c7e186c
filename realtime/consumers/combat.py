"""`/ws/combat`: authoritative turn-based combat (PROTOCOL §6). The service referees; this maps
frames to it and keeps the connection in its fight's session group."""

from __future__ import annotations

from typing import Any

from realtime import groups
from realtime.consumers.base import BaseConsumer, handles
from realtime.protocol.combat import CombatActionIn, CombatStartIn, CombatStateRequestIn
from realtime.services import combat


class CombatConsumer(BaseConsumer):
    endpoint = "combat"
    requires_auth = True

    async def on_connected(self) -> None:
        # Back in a running fight: join its group first, so no step falls between the state
        # read below and the first broadcast this connection receives.
        session_id = await combat.combat_session_of(user_id=self.user_id)
        if session_id is None:
            return
        await self.runtime.hub.join(self.conn, [groups.combat_session(session_id)])
        state = await combat.combat_session_resume(user_id=self.user_id, session_id=session_id)
        if state is not None:
            self.send_frame(state)

    async def on_disconnected(self) -> None:
        await combat.combat_connection_closed(user_id=self.user_id)

    @handles("combat_start", CombatStartIn)
    async def on_combat_start(self, message: CombatStartIn, frame_id: Any) -> None:
        outcome = await combat.combat_session_start(
            user_id=self.user_id, monsters=list(message.monsters), with_party=message.with_party
        )
        await self.runtime.hub.join(self.conn, [groups.combat_session(outcome.session_id)])
        self.reply(outcome.reply, frame_id)
        await combat.combat_session_announce(outcome, runtime=self.runtime, exclude_connection=self.conn.id)

    @handles("combat_action", CombatActionIn)
    async def on_combat_action(self, message: CombatActionIn, frame_id: Any) -> None:
        outcome = await combat.combat_action_apply(
            session_id=message.combat_session_id,
            user_id=self.user_id,
            action=message.action,
            target=message.target,
            round=message.round,
        )
        if outcome.reply is not None:
            self.reply(outcome.reply, frame_id)
        await combat.combat_step_publish(outcome, exclude_connection=self.conn.id)

    @handles("combat_state_request", CombatStateRequestIn)
    async def on_combat_state_request(self, message: CombatStateRequestIn, frame_id: Any) -> dict[str, Any]:
        return await combat.combat_state_get(session_id=message.combat_session_id, user_id=self.user_id)
