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

    # (session id, round) of the last `combat_state` this connection was sent. An action without
    # `round` answers that state: pinned to its round, a copy sent from a second device cannot
    # land on the player's next turn after the first copy took this one.
    _state_seen: tuple[str, int] | None = None

    def note_combat_state(self, session_id: str, round: int) -> None:
        self._state_seen = (session_id, round)

    def send_state(self, frame: dict[str, Any], frame_id: Any = None) -> None:
        self.note_combat_state(frame["combat_session_id"], frame["round"])
        self.reply(frame, frame_id)

    def _implied_round(self, session_id: str) -> int | None:
        seen = self._state_seen
        return seen[1] if seen is not None and seen[0] == session_id else None

    async def on_connected(self) -> None:
        # Back in a running fight: join its group first, so no step falls between the state
        # read below and the first broadcast this connection receives.
        session_id = await combat.combat_session_of(user_id=self.user_id)
        if session_id is None:
            return
        await self.runtime.hub.join(self.conn, [groups.combat_session(session_id)])
        state = await combat.combat_session_resume(user_id=self.user_id, session_id=session_id)
        if state is not None:
            self.send_state(state)

    async def on_disconnected(self) -> None:
        # While draining, presence still counts this connection (the drain forgets the instance).
        await combat.combat_connection_closed(user_id=self.user_id, still_counted=self.runtime.hub.draining)

    @handles("combat_start", CombatStartIn)
    async def on_combat_start(self, message: CombatStartIn, frame_id: Any) -> None:
        outcome = await combat.combat_session_start(
            user_id=self.user_id, monsters=list(message.monsters), with_party=message.with_party
        )
        await self.runtime.hub.join(self.conn, [groups.combat_session(outcome.session_id)])
        self.send_state(outcome.reply, frame_id)
        await combat.combat_session_announce(outcome, runtime=self.runtime, exclude_connection=self.conn.id)

    @handles("combat_action", CombatActionIn)
    async def on_combat_action(self, message: CombatActionIn, frame_id: Any) -> None:
        session_id = message.combat_session_id
        round = message.round if message.round is not None else self._implied_round(session_id)
        outcome = await combat.combat_action_apply(
            session_id=session_id, user_id=self.user_id, action=message.action, target=message.target, round=round
        )
        if outcome.reply is not None:
            self.reply(outcome.reply, frame_id)
        await combat.combat_step_publish(outcome, exclude_connection=self.conn.id)

    @handles("combat_state_request", CombatStateRequestIn)
    async def on_combat_state_request(self, message: CombatStateRequestIn, frame_id: Any) -> None:
        state = await combat.combat_state_get(session_id=message.combat_session_id, user_id=self.user_id)
        self.send_state(state, frame_id)
