"""The game API (docs/protocol.md §4): how the rest of the game tells players things in real time.

    await game.announcement_send(message="Server restart in 5 minutes", level="warning")
    await game.achievement_grant(user_id=user.pk, achievement="first_kill")
    await game.game_state_set(key="season", value={"name": "winter", "ends": "…"})
    game.announcement_send_sync(message="…")  # from sync code (views, admin, commands)

World events are the world's: `realtime.features.world.events.world_event_send`. Every function
checks the event's shape first and raises ValueError (LookupError for an unknown user) without
sending anything.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from realtime import groups
from realtime.features import presence
from realtime.features.offline import send_personal
from realtime.outbound import broadcast_to_channel, broadcast_to_stream, build_event
from realtime.protocol import streams
from realtime.protocol.game import ANNOUNCEMENT_LEVELS, AchievementOut, GameStateOut, SystemAnnouncementOut

MAX_ANNOUNCEMENT_LENGTH = 1000


def announcement_build(*, message: str, level: str = "info", **extra: Any) -> dict[str, Any]:
    """A checked `system_announcement` frame; ValueError in words an operator can act on."""
    text = message.strip() if isinstance(message, str) else ""
    if not text:
        raise ValueError("The announcement is empty.")
    if len(text) > MAX_ANNOUNCEMENT_LENGTH:
        raise ValueError(f"Announcements are at most {MAX_ANNOUNCEMENT_LENGTH} characters.")
    if level not in ANNOUNCEMENT_LEVELS:
        raise ValueError(f"level must be one of {', '.join(ANNOUNCEMENT_LEVELS)}.")
    fields = SystemAnnouncementOut.model_validate({"message": text, "level": level, **extra})
    return build_event("system_announcement", **fields.model_dump())


async def announcement_send(*, message: str, level: str = "info", **extra: Any) -> bool:
    """`system_announcement` to every `/ws/game` connection, anonymous ones included; False when
    the channel layer refused (only this instance's connections were reached)."""
    event = announcement_build(message=message, level=level, **extra)
    return (await broadcast_to_stream(streams.GAME, groups.game_all(), event)).reached


def _user_name_and_guild(user_id: str) -> tuple[str, Any] | None:
    return get_user_model().objects.filter(pk=user_id).values_list("username", "guild_id").first()


async def achievement_grant(*, user_id: Any, achievement: str, **extra: Any) -> str:
    """`achievement` to the user (kept for the next `/ws/game` connection if they have none)
    and to the members of their guild. Returns "live" or "stored" (the user's copy)."""
    fields = AchievementOut.model_validate({"user_id": str(user_id), "achievement": achievement, **extra})
    found = await database_sync_to_async(_user_name_and_guild)(fields.user_id)
    if found is None:
        raise LookupError(f"no user {fields.user_id}")
    username, guild_id = found
    event = build_event("achievement", **{**fields.model_dump(), "username": username})
    outcome = await send_personal(fields.user_id, event)
    if guild_id:
        # The user's own game connections are guild members too: they already have it.
        await broadcast_to_channel(groups.membership("game", "guild", guild_id), event, exclude_user=fields.user_id)
    return outcome


async def game_state_set(*, key: str, value: Any, **extra: Any) -> bool:
    """`game_state` (key, value) to every `/ws/game` connection. Not kept: a client that connects
    later learns a value from the game's HTTP API or the next update."""
    fields = GameStateOut.model_validate({"key": key, "value": value, **extra})
    event = build_event("game_state", **fields.model_dump())
    return (await broadcast_to_stream(streams.GAME, groups.game_all(), event)).reached


async def status_set(*, user_id: str, username: str, status: str, guild_id: str | None, party_id: str | None) -> None:
    """A player chose a status: store it and tell guild, party and the player's own connections."""
    await presence.set_status(user_id=user_id, status=status)
    await presence.announce_status(
        user_id=user_id, username=username, status=status, guild_id=guild_id, party_id=party_id
    )


announcement_send_sync = async_to_sync(announcement_send)
achievement_grant_sync = async_to_sync(achievement_grant)
game_state_set_sync = async_to_sync(game_state_set)
