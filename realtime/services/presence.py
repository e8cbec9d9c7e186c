"""Presence (PROTOCOL §4): `online` on a user's first connection anywhere, `offline` after the last.

Counts live in the shared state (Redis with several instances), keyed by connection and
instance, so a dead instance's connections can be purged by the survivors.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime import groups
from realtime.events import broadcast_to_channel, build_event
from realtime.outages import REDIS, outages
from realtime.store import PresenceChange

logger = logging.getLogger(__name__)

GAME = frozenset({"game"})
STATUSES = ("online", "away", "busy")


def _state():
    from realtime.runtime import get_shared_state

    return get_shared_state()


def _runtime():
    from realtime.runtime import current_runtime

    return current_runtime()


async def user_reachable(user_id: str, endpoints: frozenset[str] | None) -> bool:
    """Does the user have an open connection on an endpoint that carries such events?

    When the shared state fails, this instance's own connections answer: a user connected here
    still gets the event live (the broadcast falls back to local delivery); anyone else gets it
    stored, and their instance hands it over when Redis is back (`services/recovery.py`).
    """
    try:
        counts = await _state().user_endpoints(str(user_id))
    except Exception as exc:
        outages.failed(REDIS, exc)
        runtime = _runtime()
        local = runtime.hub.user_connections(str(user_id)) if runtime is not None else ()
        return any(not conn.closing and (endpoints is None or conn.endpoint in endpoints) for conn in local)
    if endpoints is None:
        return bool(counts)
    return any(counts.get(endpoint) for endpoint in endpoints)


async def connection_opened(
    *, user_id: str, connection_id: str, endpoint: str, instance_id: str
) -> PresenceChange | None:
    """Record an opened connection; None when the shared state failed (reconciled later)."""
    try:
        return await _state().connection_opened(
            user_id=user_id, connection_id=connection_id, endpoint=endpoint, instance_id=instance_id
        )
    except Exception as exc:
        outages.failed(REDIS, exc)
        runtime = _runtime()
        if runtime is not None:
            runtime.unconfirmed_opens.add(connection_id)
        return None


async def connection_closed(*, user_id: str, connection_id: str, instance_id: str) -> PresenceChange | None:
    """Record a closed connection; None when the shared state failed (reconciled later)."""
    try:
        return await _state().connection_closed(user_id=user_id, connection_id=connection_id, instance_id=instance_id)
    except Exception as exc:
        outages.failed(REDIS, exc)
        runtime = _runtime()
        if runtime is not None:
            runtime.unconfirmed_opens.discard(connection_id)
            runtime.unconfirmed_closes[connection_id] = str(user_id)
        return None


async def announce_status(
    *,
    user_id: str,
    username: str,
    status: str,
    guild_id: Any = None,
    party_id: Any = None,
    sole_connection: Any = None,
    no_connections: bool = False,
) -> None:
    """Send `player_status` once to each guild/party member's game connections and to the user's own.

    The user's own game connections are members of their guild and party groups; a member of
    both the guild and the party is skipped in the party broadcast, so nobody gets it twice.
    Without guild and party the only audience is the user's own game connections: when the
    caller knows that is just `sole_connection` (the user's first connection anywhere) or nobody
    (`no_connections`: the last one closed), no publish is needed at all.
    """
    event = build_event("player_status", user_id=str(user_id), username=username, status=status)
    if guild_id:
        await broadcast_to_channel(groups.membership("game", "guild", guild_id), event)
    if party_id:
        await broadcast_to_channel(
            groups.membership("game", "party", party_id),
            event,
            filter_name="not_in_guild" if guild_id else None,
            filter_args=str(guild_id) if guild_id else None,
        )
    if guild_id or party_id or no_connections:
        return
    if sole_connection is not None:
        if sole_connection.endpoint in GAME:
            sole_connection.consumer.send_frame(event)
        return
    await broadcast_to_channel(groups.user(user_id), event, endpoints=GAME)


def not_in_guild_filter(conn: Any, guild_id: str) -> str | None:
    """Hub filter for the party copy of a presence event (see `announce_status`)."""
    return None if getattr(conn.consumer, "guild_id", None) == guild_id else "text"


async def set_status(*, user_id: str, status: str) -> None:
    await _state().set_status(str(user_id), None if status == "online" else status)


async def get_status(user_id: str) -> str:
    try:
        return await _state().get_status(str(user_id)) or "online"
    except Exception:
        return "online"
