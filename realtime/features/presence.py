"""Presence (docs/protocol.md §4): `online` on a user's first connection anywhere, `offline` after the last.

Counts live in the store (Redis with several instances), keyed by connection and instance, so
a dead instance's connections can be purged by the survivors. `PresenceTracker` is this
instance's side of it: it records opens and closes, remembers what the store did not confirm
(Redis failed) and reconciles it once the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model

from realtime import groups
from realtime.batching import BatchedLookup
from realtime.connection import Connection, ConnectionUser
from realtime.hub import Hub, local_hub
from realtime.outages import REDIS, outages
from realtime.outbound import broadcast_to_channel, build_event
from realtime.runtime import Runtime
from realtime.store import Opening, PresenceChange, Store, get_store

logger = logging.getLogger(__name__)

GAME = frozenset({"game"})
STATUSES = ("online", "away", "busy")
# The hub filter that skips guild members in the party copy of a presence event.
NOT_IN_GUILD = "not_in_guild"


async def user_reachable(user_id: str, endpoints: frozenset[str] | None) -> bool:
    """Does the user have an open connection on an endpoint that carries such events?

    When the store fails, this instance's own connections answer: a user connected here still
    gets the event live (the broadcast falls back to local delivery); anyone else gets it
    stored, and their instance hands it over when Redis is back (features/offline.py).
    """
    try:
        counts = await get_store().user_endpoints(str(user_id))
    except Exception as exc:
        outages.failed(REDIS, exc)
        hub = local_hub()
        local = hub.user_connections(str(user_id)) if hub is not None else set()
        return any(not conn.closing and (endpoints is None or conn.endpoint in endpoints) for conn in local)
    if endpoints is None:
        return bool(counts)
    return any(counts.get(endpoint) for endpoint in endpoints)


async def endpoint_connections(user_id: str, endpoint: str) -> int | None:
    """The user's open connections on one endpoint across the cluster; None when the store failed."""
    try:
        return (await get_store().user_endpoints(str(user_id))).get(endpoint, 0)
    except Exception as exc:
        outages.failed(REDIS, exc)
        return None


async def announce_status(
    *,
    user_id: str,
    username: str,
    status: str,
    guild_id: Any = None,
    party_id: Any = None,
    sole_connection: Connection | None = None,
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
            filter_name=NOT_IN_GUILD if guild_id else None,
            filter_args=str(guild_id) if guild_id else None,
        )
    if guild_id or party_id or no_connections:
        return
    if sole_connection is not None:
        if sole_connection.endpoint in GAME:
            sole_connection.send(event)
        return
    await broadcast_to_channel(groups.user(user_id), event, endpoints=GAME)


def not_in_guild_filter(conn: Connection, guild_id: str) -> str | None:
    """Hub filter for the party copy of a presence event (see `announce_status`)."""
    return None if conn.user is not None and conn.user.guild_id == guild_id else "text"


async def set_status(*, user_id: str, status: str) -> None:
    await get_store().set_status(str(user_id), None if status == "online" else status)


async def get_status(user_id: str) -> str:
    try:
        return await get_store().get_status(str(user_id)) or "online"
    except Exception:
        return "online"


# Users per query: a dead instance may have held 20,000, and SQLite limits a query's parameters.
STATUS_CHUNK = 500


def _users_for_status(user_ids: list[str]) -> list[tuple[str, str, Any, Any]]:
    User = get_user_model()
    found = []
    for start in range(0, len(user_ids), STATUS_CHUNK):
        rows = User.objects.filter(pk__in=user_ids[start : start + STATUS_CHUNK]).values_list(
            "pk", "username", "guild_id", "party_id"
        )
        found += [(str(pk), username, guild_id, party_id) for pk, username, guild_id, party_id in rows]
    return found


async def announce_statuses(user_ids: list[str], status: str) -> None:
    """`player_status` for users this instance did not see change (reconciliation, dead instances)."""
    if not user_ids:
        return
    for user_id, username, guild_id, party_id in await database_sync_to_async(_users_for_status)(user_ids):
        await announce_status(user_id=user_id, username=username, status=status, guild_id=guild_id, party_id=party_id)


class PresenceTracker:
    """This instance's presence: opens and closes recorded in the store, and what it missed."""

    def __init__(self, *, store: Store, hub: Hub, instance_id: str) -> None:
        self.store = store
        self.hub = hub
        self.instance_id = instance_id
        self._lock = asyncio.Lock()
        # Changes the store did not confirm (Redis failed), reconciled once it answers again.
        self.unconfirmed_opens: set[str] = set()  # connection ids; `online` may be unannounced
        self.unconfirmed_closes: dict[str, str] = {}  # connection id -> user id; entry may remain
        self.strays: dict[str, str] = {}  # entries found for connections we do not hold
        self.confirmed = False  # the last reconciliation succeeded
        # Connects that arrive together are recorded in one store call (a reconnect storm).
        self._admissions = BatchedLookup(self._admit_many)

    async def _admit_many(self, openings: list[Opening]) -> dict[Opening, PresenceChange]:
        changes = await self.store.connections_opened(self.instance_id, openings)
        return dict(zip(openings, changes, strict=True))

    async def admit(
        self, *, connection_id: str, user: ConnectionUser, endpoint: str, cap: int
    ) -> PresenceChange | None:
        """Record a connection about to open, within the user's cap across the cluster (checked
        and recorded in one atomic step in the store). None: the store failed; the connection
        is recorded when it answers again, and meanwhile the cap holds on this instance only."""
        try:
            change = await self._admissions(Opening(user.id, connection_id, endpoint, cap))
            assert change is not None  # every opening of a batch gets its answer
            return change
        except Exception as exc:
            outages.failed(REDIS, exc)
        local = len(self.hub.user_connections(user.id))
        if cap and local >= cap:
            return PresenceChange(user.id, local, admitted=False)
        self.unconfirmed_opens.add(connection_id)
        return None

    async def opened(self, conn: Connection, change: PresenceChange | None) -> None:
        """The connection is open: announce `online` when it is the user's first anywhere."""
        user = conn.user
        if user is None or change is None or not change.first:
            return
        await announce_status(
            user_id=user.id,
            username=user.username,
            status="online",
            guild_id=user.guild_id,
            party_id=user.party_id,
            sole_connection=conn,
        )

    async def closed(self, *, connection_id: str, user: ConnectionUser | None) -> None:
        """Record a closed connection; announce `offline` when it was the user's last anywhere."""
        if user is None:
            return
        try:
            change = await self.store.connection_closed(
                user_id=user.id, connection_id=connection_id, instance_id=self.instance_id
            )
        except Exception as exc:
            outages.failed(REDIS, exc)
            self.unconfirmed_opens.discard(connection_id)
            self.unconfirmed_closes[connection_id] = user.id
            return
        if change.last:
            await announce_status(
                user_id=user.id,
                username=user.username,
                status="offline",
                guild_id=user.guild_id,
                party_id=user.party_id,
                no_connections=True,
            )

    async def reconcile(self) -> None:
        """Make this instance's presence in the store match the connections it holds.

        Re-asserts every open connection (Redis may have restarted empty), removes entries of
        connections that closed while Redis failed and strays found by the previous run (two
        runs in a row, so a connection that opened just after the snapshot is never removed),
        and announces `offline` for users left with no connection and `online` for users whose
        connection opened during the outage. Entries of closes Redis never saw are removed only
        after one successful run, so every instance has re-asserted its own connections first
        (otherwise a user connected elsewhere would be announced offline after an empty restart).
        """
        hub = self.hub
        if hub.draining:
            return
        async with self._lock:
            live = {c.id: (c.user.id, c.endpoint) for c in hub.connections.values() if c.user is not None}
            gone = {conn_id: user_id for conn_id, user_id in self.strays.items() if conn_id not in live}
            closes = dict(self.unconfirmed_closes) if self.confirmed else {}
            gone.update(closes)
            try:
                result = await self.store.refresh_instance(self.instance_id, live, gone=gone)
            except Exception as exc:
                self.confirmed = False
                outages.failed(REDIS, exc)
                return
            self.confirmed = True
            self.strays = result.strays
            for conn_id in closes:
                self.unconfirmed_closes.pop(conn_id, None)
            opened = [hub.connections[c] for c in self.unconfirmed_opens if c in hub.connections]
            self.unconfirmed_opens.clear()
        online = list(dict.fromkeys(c.user_id for c in opened if c.user_id and c.user_id not in result.offline))
        if result.offline or online:
            logger.info("presence reconciled: %d users offline, %d online", len(result.offline), len(online))
            await announce_statuses(list(result.offline), "offline")
            await announce_statuses(online, "online")

    async def instance_forgotten(self, instance_id: str) -> None:
        """A dead (or drained) instance: forget its connections, announce who is now offline."""
        try:
            offline = await self.store.purge_instance(instance_id)
        except Exception as exc:
            logger.warning("could not purge presence of %s: %s", instance_id, exc)
            return
        await announce_statuses(offline, "offline")


def install(runtime: Runtime) -> None:
    tracker = PresenceTracker(store=runtime.store, hub=runtime.hub, instance_id=runtime.instance_id)
    runtime.provide(tracker)
    runtime.hub.register_filter(NOT_IN_GUILD, not_in_guild_filter)
    runtime.every("presence", lambda: settings.WEBSOCKET_CLEANUP_INTERVAL, tracker.reconcile)
    runtime.on_instance_dead(tracker.instance_forgotten)
    runtime.on_redis_recovered(tracker.reconcile)
