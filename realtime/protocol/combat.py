"""Client frames of `/ws/combat` (docs/protocol.md §6)."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from realtime.protocol import ClientFrame
from realtime.protocol.catalogue import MAX_MONSTERS_PER_FIGHT


def _canonical_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValueError("must be a UUID") from exc


# Strict mode refuses a string for a `uuid.UUID` field, so parse it ourselves (canonical form).
SessionId = Annotated[str, StringConstraints(max_length=64), AfterValidator(_canonical_uuid)]
MonsterKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]


FIGHT = "c7a7d0e1-af8b-4639-be66-8f9d5313b04e"  # for the examples of docs/asyncapi.json


class CombatStartIn(ClientFrame):
    """Start a fight against monsters of the catalogue, alone or with the party."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "combat_start", "monsters": ["goblin", "wolf"], "with_party": True}]}
    )

    monsters: list[MonsterKey] = Field(min_length=1, max_length=MAX_MONSTERS_PER_FIGHT)
    with_party: bool = False


class CombatActionIn(ClientFrame):
    """Act on your turn: `attack` (a `target`), `defend` or `flee`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "combat_action",
                    "combat_session_id": FIGHT,
                    "action": "attack",
                    "target": "goblin-1",
                    "round": 2,
                    "id": 7,
                }
            ]
        }
    )

    combat_session_id: SessionId
    # Checked by the rules, not here: an unknown action is `invalid_action`, not a malformed frame.
    action: Annotated[str, StringConstraints(max_length=64)]
    target: Annotated[str, StringConstraints(max_length=64)] | None = None
    # Optional: pins the action to this round, so a resent action never lands on a later turn.
    round: Annotated[int, Field(ge=1)] | None = None


class CombatStateRequestIn(ClientFrame):
    """Ask for a fight's `combat_state`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "combat_state_request", "combat_session_id": FIGHT, "id": 8}]}
    )

    # Optional: without it, the caller's running fight.
    combat_session_id: SessionId | None = None
