"""`/ws/combat`: authoritative turn-based combat (docs/protocol.md §6). The feature referees;
this maps frames to it and keeps the connection in its fight's session group."""

from __future__ import annotations

from typing import Any

from realtime import groups
from realtime.consumers.base import BaseConsumer, handles
from realtime.features.combat import service as combat
from realtime.features.combat.service import Reply, RoundsShown
from realtime.protocol import streams
from realtime.protocol.combat import CombatActionIn, CombatStartIn, CombatStateRequestIn


class CombatConsumer(BaseConsumer):
    endpoint = "combat"
    requires_auth = True

    def send_state(self, frame: dict[str, Any], frame_id: Any = None) -> None:
        """A `combat_state` to this connection only; the round it shows is what an action sent
        without `round` answers (see `RoundsShown`)."""
        self.node.get(RoundsShown).note(frame["combat_session_id"], frame["round"], over=frame["status"] != "active")
        self.connection.reply(frame, frame_id)

    def _reply(self, frame_id: Any) -> Reply:
        return Reply(self.connection, frame_id, self.node.get(RoundsShown))

    _fight: str | None = None  # the running fight found when the connection opened

    async def opening_groups(self) -> list[str]:
        # Back in a running fight: its group is joined with the others before
        # `connection_established` (which then says where the fight's stream stands), so no
        # step falls between the state read in `on_connected` and the first broadcast.
        self._fight = await combat.combat_session_of(user_id=self.user.id)
        return [groups.combat_session(self._fight)] if self._fight is not None else []

    async def on_connected(self) -> None:
        if self._fight is None:
            return
        state = await combat.combat_session_resume(user_id=self.user.id, session_id=self._fight)
        if state is not None:
            self.send_state(state)

    async def on_disconnected(self) -> None:
        # While draining, presence still counts this connection (the drain forgets the instance).
        await combat.combat_connection_closed(user_id=self.user.id, still_counted=self.node.hub.draining)

    @handles("combat_start", CombatStartIn)
    async def on_combat_start(self, message: CombatStartIn, frame_id: Any) -> None:
        outcome = await combat.combat_session_start(
            user_id=self.user.id, monsters=list(message.monsters), with_party=message.with_party
        )
        await self.node.hub.join(self.connection, [groups.combat_session(outcome.session_id)])
        # A new fight's stream starts empty: this connection follows it from its first frame.
        self.connection.set_floors({streams.combat(outcome.session_id): 0})
        await combat.combat_session_announce(outcome, runtime=self.node, reply_to=self._reply(frame_id))

    @handles("combat_action", CombatActionIn)
    async def on_combat_action(self, message: CombatActionIn, frame_id: Any) -> None:
        session_id = message.combat_session_id
        # An action without `round` answers the last state this instance showed the fight.
        round = message.round if message.round is not None else self.node.get(RoundsShown).get(session_id)
        outcome = await combat.combat_action_apply(
            session_id=session_id, user_id=self.user.id, action=message.action, target=message.target, round=round
        )
        await combat.combat_step_publish(outcome, reply_to=self._reply(frame_id))

    @handles("combat_state_request", CombatStateRequestIn)
    async def on_combat_state_request(self, message: CombatStateRequestIn, frame_id: Any) -> None:
        state = await combat.combat_state_get(session_id=message.combat_session_id, user_id=self.user.id)
        self.send_state(state, frame_id)
