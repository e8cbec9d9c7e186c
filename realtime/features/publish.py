"""The publish API (docs/protocol.md §8): where a published event goes, and the checks it passes.

`POST /api/v1/websocket/publish` hands `{"target", "message"}` here. Game and world events are
checked like the server API checks them (a bad level or a missing field is a 400, not a broken
frame on every client) and sent through their feature's own function, so an achievement for
`user:<uuid>` also reaches the user's guild and a world event goes where the world sends it.
Other event types are published as they are.
"""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from pydantic import BaseModel, ValidationError

from accounts.models import Guild, Party
from realtime import groups
from realtime.features.game import achievement_grant, announcement_build
from realtime.features.offline import send_personal
from realtime.features.world.events import world_event_send
from realtime.features.world.zones import zone_get
from realtime.outbound import broadcast_to_groups, broadcast_to_stream, build_event
from realtime.protocol import endpoints_for, now_iso, streams, validation_details
from realtime.protocol.game import AchievementOut, GameStateOut, PlayerStatusOut, SystemAnnouncementOut
from realtime.protocol.world import WorldEventOut

SCHEMAS: dict[str, type[BaseModel]] = {
    "system_announcement": SystemAnnouncementOut,
    "achievement": AchievementOut,
    "game_state": GameStateOut,
    "player_status": PlayerStatusOut,
    "world_event": WorldEventOut,
}


class PublishError(ValueError):
    """A publish target or message that cannot be sent (bad target, a malformed event)."""


def resolve_target(target: str, event_type: str = "") -> tuple[str, list[str]]:
    """Map a publish target to ("user", [user_id]) or ("group", [group names])."""
    if not isinstance(target, str):
        raise PublishError("target must be a string")
    kind, _, value = target.partition(":")
    simple = {"game": groups.game_all(), "world": groups.world_all(), "chat": groups.chat_global()}
    if kind in simple and not value:
        return "group", [simple[kind]]
    if kind == "user" and value:
        try:
            return "user", [str(uuid.UUID(value))]
        except ValueError as exc:
            raise PublishError("user target needs a UUID: user:<uuid>") from exc
    if kind == "zone" and value:
        if not value.replace("_", "").replace("-", "").isalnum() or len(value) > 64:
            raise PublishError("zone names are letters, digits, '_' and '-'")
        return "group", [groups.zone(value)]
    if kind in ("guild", "party") and value:
        try:
            scope_id = uuid.UUID(value)
        except ValueError as exc:
            raise PublishError(f"{kind} target needs a UUID: {kind}:<uuid>") from exc
        # Members' chat connections for chat types, their game connections for the rest.
        carried = endpoints_for(event_type) or frozenset({"game"})
        endpoints = sorted(carried & {"chat", "game"}) or ["game"]
        return "group", [groups.membership(endpoint, kind, scope_id) for endpoint in endpoints]
    raise PublishError("unknown target; use user:<uuid>, game, world, zone:<name>, guild:<id>, party:<id> or chat")


def _row_exists(model: Any, pk: str) -> bool:
    return model.objects.filter(pk=pk).exists()


async def target_missing(target: str) -> str | None:
    """What a well-formed target names, when it does not exist ("No such zone."), else None."""
    kind, _, value = target.partition(":")
    if kind == "zone":
        return None if await zone_get(value) is not None else "No such zone."
    models = {"user": get_user_model(), "guild": Guild, "party": Party}
    if kind in models and not await database_sync_to_async(_row_exists)(models[kind], value):
        return f"No such {kind}."
    return None


def _checked(event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        return SCHEMAS[event_type].model_validate(fields).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{item['field']}: {item['problem']}" for item in validation_details(exc))
        raise PublishError(f"{event_type}: {problems}") from exc


async def _send_typed(target: str, kind: str, names: list[str], event_type: str, fields: dict[str, Any]) -> str:
    """A game or world event, checked and sent the way its feature sends it."""
    if event_type == "world_event" and kind == "group":
        zone = target.partition(":")[2] if target.startswith("zone:") else None
        if fields.setdefault("zone", zone) != zone:
            raise PublishError("zone must match the target: null for 'world', the zone's name for 'zone:<name>'")
        checked = _checked(event_type, fields)
        return "live" if await world_event_send(**checked) else "local"
    if kind == "user" and event_type in ("achievement", "player_status"):
        fields.setdefault("user_id", names[0])
    if event_type == "system_announcement":
        try:
            event = announcement_build(**fields)
        except (ValueError, TypeError) as exc:
            raise PublishError(f"system_announcement: {exc}") from exc
    else:
        checked = _checked(event_type, fields)
        if kind == "user" and checked.get("user_id", names[0]) != names[0]:
            raise PublishError("user_id must be the target user")
        if kind == "user" and event_type == "achievement":
            return await achievement_grant(**checked)
        event = build_event(event_type, **checked)
    if kind == "user":
        return await send_personal(names[0], event)
    if names == [groups.game_all()]:  # announcements and game state to everyone: the `game` stream
        return "live" if (await broadcast_to_stream(streams.GAME, names[0], event)).reached else "local"
    return await broadcast_to_groups(names, event)


async def publish(target: str, message: dict[str, Any]) -> str:
    """Publish a whole event frame to a target of the publish API; the server adds `timestamp`.

    Returns "live", "stored" (user target, kept for offline delivery) or "local" (the channel
    layer refused: only connections on this instance were reached). Raises PublishError."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str) or not message["type"]:
        raise PublishError("message must be an object with a string 'type'")
    event_type = message["type"]
    kind, names = resolve_target(target, event_type)
    if event_type in SCHEMAS:
        fields = {key: value for key, value in message.items() if key not in ("type", "timestamp")}
        try:
            return await _send_typed(target, kind, names, event_type, fields)
        except PublishError:
            raise
        except (ValueError, LookupError) as exc:  # the feature's own checks (an unknown user, ...)
            raise PublishError(str(exc)) from exc
    event = {**message, "timestamp": now_iso()}
    if kind == "user":
        return await send_personal(names[0], event)
    return await broadcast_to_groups(names, event)
