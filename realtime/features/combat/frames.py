"""The frames players see of a fight (docs/protocol.md §6), built from the engine's events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from realtime.features.combat.engine import CombatState, Event
from realtime.models import CombatSession
from realtime.outbound import build_event
from realtime.protocol import iso_or_none

ACTIVE = CombatSession.Status.ACTIVE


@dataclass(frozen=True, slots=True)
class Effect:
    """One outbound message of a step, published in order after the commit."""

    # "group": to the session group; "user": personal (kept if offline); "leave": the user's
    # connections leave the session group; "close": every connection leaves it.
    kind: Literal["group", "user", "leave", "close"]
    event: dict[str, Any] | None = None
    user_id: str | None = None
    exclude_connection: str | None = None


def state_frame(session_id: str, view: dict[str, Any], deadline: datetime | None) -> dict[str, Any]:
    """`combat_state` exactly as docs/protocol.md §6 shows it; `deadline` only on a player's running turn."""
    actor = view["actor"]
    player_turn = view["status"] == ACTIVE and any(
        p["id"] == actor and p["kind"] == "player" for p in view["participants"]
    )
    return build_event(
        "combat_state",
        combat_session_id=session_id,
        status=view["status"],
        round=view["round"],
        turn={"actor": actor, "deadline": iso_or_none(deadline) if player_turn else None},
        participants=view["participants"],
    )


def participant_event(session_id: str, user_id: str, event: str) -> dict[str, Any]:
    return build_event("combat_participant", combat_session_id=session_id, user_id=user_id, event=event)


def effects_of(session_id: str, events: list[Event], state: CombatState, deadline: datetime | None) -> list[Effect]:
    """The frames of a step's events, in order (see docs/protocol.md, /ws/combat)."""
    effects: list[Effect] = []
    for event in events:
        data = event.data
        if data["kind"] == "action":
            fields = {k: data[k] for k in ("actor", "action", "target", "damage", "target_hp")}
            fields.update({k: data[k] for k in ("critical", "fled") if k in data})
            effects.append(Effect("group", build_event("combat_action_result", combat_session_id=session_id, **fields)))
        elif data["kind"] == "timeout":
            effects.append(
                Effect("group", build_event("combat_timeout", combat_session_id=session_id, actor=data["actor"]))
            )
        elif data["kind"] == "left":
            user_id = data["actor"]
            effects.append(Effect("group", participant_event(session_id, user_id, "left")))
            # Each player gets exactly one combat_end: now, for leaving, or when the fight ends.
            end = build_event("combat_end", combat_session_id=session_id, outcome="fled")
            effects.append(Effect("user", end, user_id=user_id))
            effects.append(Effect("leave", user_id=user_id))
        elif data["kind"] == "end":
            end = build_event("combat_end", combat_session_id=session_id, outcome=data["outcome"])
            effects.extend(Effect("user", end, user_id=p.id) for p in state.players if not p.fled)
            effects.append(Effect("close"))
        if event.view is not None:
            effects.append(Effect("group", state_frame(session_id, event.view, deadline)))
    return effects
