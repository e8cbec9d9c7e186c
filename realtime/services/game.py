"""The game API (PROTOCOL §4): how the rest of the game tells players things in real time.

    await game.announcement_send(message="Server restart in 5 minutes", level="warning")
    await game.achievement_grant(user_id=user.pk, achievement="first_kill")
    await game.game_state_set(key="season", value={"name": "winter", "ends": "…"})
    await game.world_event_send(event="dragon_spawn", zone="dark_forest", message="A dragon!")
    game.announcement_send_sync(message="…")  # from sync code (views, admin, commands)

Every function checks the event's shape first and raises ValueError (LookupError for an
unknown user or zone) without sending anything.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from realtime import groups
from realtime.events import broadcast_to_channel, build_event, send_personal_message
from realtime.protocol.game import AchievementOut, GameStateOut, SystemAnnouncementOut
from realtime.services import presence
from realtime.services.world import world_event_send

__all__ = [
    "achievement_grant",
    "achievement_grant_sync",
    "announcement_send",
    "announcement_send_sync",
    "game_state_set",
    "game_state_set_sync",
    "status_set",
    "world_event_send",
    "world_event_send_sync",
]


async def announcement_send(*, message: str, level: str = "info", **extra: Any) -> None:
    """`system_announcement` to every `/ws/game` connection, anonymous ones included."""
    fields = SystemAnnouncementOut.model_validate({"message": message, "level": level, **extra})
    await broadcast_to_channel(groups.game_all(), build_event("system_announcement", **fields.model_dump()))


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
    outcome = await send_personal_message(fields.user_id, event)
    if guild_id:
        # The user's own game connections are guild members too: they already have it.
        await broadcast_to_channel(groups.membership("game", "guild", guild_id), event, exclude_user=fields.user_id)
    return outcome


async def game_state_set(*, key: str, value: Any, **extra: Any) -> None:
    """`game_state` (key, value) to every `/ws/game` connection. Not kept: a client that connects
    later learns a value from the game's HTTP API or the next update."""
    fields = GameStateOut.model_validate({"key": key, "value": value, **extra})
    await broadcast_to_channel(groups.game_all(), build_event("game_state", **fields.model_dump()))


async def status_set(*, user_id: str, username: str, status: str, guild_id: str | None, party_id: str | None) -> None:
    """A player chose a status: store it and tell guild, party and the player's own connections."""
    await presence.set_status(user_id=user_id, status=status)
    await presence.announce_status(
        user_id=user_id, username=username, status=status, guild_id=guild_id, party_id=party_id
    )


announcement_send_sync = async_to_sync(announcement_send)
achievement_grant_sync = async_to_sync(achievement_grant)
game_state_set_sync = async_to_sync(game_state_set)
world_event_send_sync = async_to_sync(world_event_send)
