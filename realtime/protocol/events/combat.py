"""Frames of /ws/combat (docs/protocol.md §6)."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from realtime.protocol.events.shapes import (
    ALICE,
    BOB,
    FIGHT,
    T0,
    Participant,
    PositionedMixin,
    ReplyMixin,
    Timestamp,
    Turn,
    Uuid,
    server_frame,
)


@server_frame(
    {
        "type": "combat_state",
        "combat_session_id": FIGHT,
        "status": "active",
        "round": 1,
        "turn": {"actor": ALICE, "deadline": "2026-11-26T10:00:30.000Z"},
        "participants": [
            {"id": "goblin-1", "kind": "monster", "name": "Goblin", "hp": 12, "max_hp": 12, "alive": True},
            {"id": ALICE, "kind": "player", "name": "alice", "hp": 27, "max_hp": 30, "alive": True},
        ],
        "timestamp": T0,
    }
)
class CombatState(PositionedMixin, ReplyMixin):
    """The whole fight: after every step, on request and when you reconnect to it."""

    type: Literal["combat_state"]
    combat_session_id: Uuid
    status: Literal["active", "victory", "defeat", "fled"]
    round: Annotated[int, Field(ge=1)]
    turn: Turn
    participants: list[Participant]
    timestamp: Timestamp


@server_frame(
    {
        "type": "combat_action_result",
        "combat_session_id": FIGHT,
        "actor": ALICE,
        "action": "attack",
        "target": "goblin-1",
        "damage": 7,
        "target_hp": 5,
        "critical": False,
        "timestamp": T0,
    }
)
class CombatActionResult(PositionedMixin, ReplyMixin):
    """What one action did, the monsters' included."""

    type: Literal["combat_action_result"]
    combat_session_id: Uuid
    actor: str
    action: Literal["attack", "defend", "flee"]
    target: str | None
    damage: Annotated[int, Field(ge=0)]
    target_hp: Annotated[int, Field(ge=0)] | None
    critical: NotRequired[Annotated[bool, Field(description="With attacks.")]]
    fled: NotRequired[Annotated[bool, Field(description="With `flee`: whether it worked.")]]
    timestamp: Timestamp


@server_frame({"type": "combat_timeout", "combat_session_id": FIGHT, "actor": ALICE, "timestamp": T0})
class CombatTimeout(PositionedMixin):
    """A player did not act in time: the turn is lost."""

    type: Literal["combat_timeout"]
    combat_session_id: Uuid
    actor: str
    timestamp: Timestamp


@server_frame({"type": "combat_end", "combat_session_id": FIGHT, "outcome": "victory", "timestamp": T0})
class CombatEnd(TypedDict):
    """The fight is over for you: its outcome, or `fled` when you got away (kept for later)."""

    type: Literal["combat_end"]
    combat_session_id: Uuid
    outcome: Literal["victory", "defeat", "fled"]
    timestamp: Timestamp


@server_frame(
    {"type": "combat_participant", "combat_session_id": FIGHT, "user_id": BOB, "event": "joined", "timestamp": T0}
)
class CombatParticipant(PositionedMixin):
    """A player joined, left, lost or regained their connection to the fight."""

    type: Literal["combat_participant"]
    combat_session_id: Uuid
    user_id: Uuid
    event: Literal["joined", "left", "disconnected", "reconnected"]
    timestamp: Timestamp
