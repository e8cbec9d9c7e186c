"""Game and world events that arrive through the publish route (PROTOCOL §8).

They are checked like the server API checks them (a bad level or a missing field is a 400, not a
broken frame on every client), and an achievement for `user:<uuid>` also reaches the user's
guild, exactly as `game.achievement_grant` does. Other event types are published as they are.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from realtime.events import broadcast_to_groups, build_event, send_personal_message
from realtime.protocol import validation_details
from realtime.protocol.game import AchievementOut, GameStateOut, PlayerStatusOut, SystemAnnouncementOut
from realtime.protocol.world import WorldEventOut

SCHEMAS: dict[str, type[BaseModel]] = {
    "system_announcement": SystemAnnouncementOut,
    "achievement": AchievementOut,
    "game_state": GameStateOut,
    "player_status": PlayerStatusOut,
    "world_event": WorldEventOut,
}


def _fields(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key not in ("type", "timestamp")}


async def published_send(*, target: str, kind: str, names: list[str], message: dict[str, Any]) -> str | None:
    """Check and send a game/world event for the publish route; None for other types.

    `kind`/`names` are the resolved target (`events.resolve_target`). Raises ValueError
    (LookupError for an unknown user or zone) before anything is sent.
    """
    event_type = message["type"]
    schema = SCHEMAS.get(event_type)
    if schema is None:
        return None
    fields = _fields(message)
    if event_type == "world_event" and kind == "group":
        zone = target.partition(":")[2] if target.startswith("zone:") else None
        if fields.setdefault("zone", zone) != zone:
            raise ValueError("zone must match the target: null for 'world', the zone's name for 'zone:<name>'")
        if zone is not None:
            from realtime.services.world import zone_get

            if await zone_get(zone) is None:
                raise LookupError(f"no zone called {zone!r}")
    if kind == "user" and event_type in ("achievement", "player_status"):
        fields.setdefault("user_id", names[0])
    try:
        checked = schema.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{item['field']}: {item['problem']}" for item in validation_details(exc))
        raise ValueError(f"{event_type}: {problems}") from exc
    if kind == "user" and getattr(checked, "user_id", names[0]) != names[0]:
        raise ValueError("user_id must be the target user")
    if kind == "user" and event_type == "achievement":
        from realtime.services.game import achievement_grant

        return await achievement_grant(**checked.model_dump())
    event = build_event(event_type, **checked.model_dump())
    if kind == "user":
        return await send_personal_message(names[0], event)
    return await broadcast_to_groups(names, event)
