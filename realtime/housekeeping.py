"""Periodic work of one instance: heartbeats and timeouts, registry flushes, liveness, cleanup of
dead instances, token re-validation, and the jobs feature services register.

One task ticks a few times per shortest interval; each job runs as its own task and never
overlaps itself, so a slow database never delays heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from realtime.outages import DATABASE, REDIS, outages, service_of
from realtime.protocol import CloseCode, ErrorCode, encode, now_iso
from realtime.registry import DEAD_AFTER_INTERVALS
from realtime.transport import OutboundFrame

if TYPE_CHECKING:
    from realtime.runtime import Runtime

logger = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._task: asyncio.Task | None = None
        self._last_run: dict[str, float] = {}
        self._running: dict[str, asyncio.Task] = {}
        self._last_ping = time.monotonic()
        self._registry_ok_since: float | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="housekeeping")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in self._running.values():
            task.cancel()

    @staticmethod
    def _tick() -> float:
        shortest = min(
            settings.WEBSOCKET_HEARTBEAT_INTERVAL,
            settings.WEBSOCKET_CONNECTION_TIMEOUT,
            settings.WEBSOCKET_CLEANUP_INTERVAL,
            settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL,
            settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL,
        )
        return min(1.0, max(0.05, shortest / 4))

    async def _loop(self) -> None:
        # Register this instance straight away so the cluster sees it before its first cleanup.
        self._spawn("cleanup", self.cleanup)
        while True:
            await asyncio.sleep(self._tick())
            try:
                self.heartbeat()
                self._maybe("flush", settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL, self.flush)
                self._maybe("cleanup", settings.WEBSOCKET_CLEANUP_INTERVAL, self.cleanup)
                self._maybe("revalidate", settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL, self.revalidate)
                for name, interval, job in self.runtime.jobs:
                    self._maybe(name, interval(), job)
            except Exception:
                logger.exception("housekeeping tick failed")

    def _maybe(self, name: str, every: float, job: Callable[[], Awaitable[Any]]) -> None:
        last = self._last_run.get(name)
        if last is not None and time.monotonic() - last < every:
            return
        if name in self._running and not self._running[name].done():
            return
        self._spawn(name, job)

    def _spawn(self, name: str, job: Callable[[], Awaitable[Any]]) -> None:
        self._last_run[name] = time.monotonic()
        self._running[name] = asyncio.get_running_loop().create_task(self._guarded(name, job), name=f"job-{name}")

    @staticmethod
    async def _guarded(name: str, job: Callable[[], Awaitable[Any]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            service = service_of(exc)
            if service is None:
                logger.warning("housekeeping job %s failed: %s", name, exc)
            elif not outages.failed(service, exc):
                logger.debug("housekeeping job %s failed: %s", name, exc)

    # --- jobs ----------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Ping everyone every heartbeat interval (one prepared frame); close silent connections."""
        now = time.monotonic()
        wall = time.time()
        hub = self.runtime.hub
        send_ping = now - self._last_ping >= settings.WEBSOCKET_HEARTBEAT_INTERVAL
        if send_ping:
            self._last_ping = now
            frame = OutboundFrame(encode({"type": "ping", "timestamp": now_iso()}))
        timeout = settings.WEBSOCKET_CONNECTION_TIMEOUT
        for conn in list(hub.connections.values()):
            if conn.closing:
                continue
            if now - conn.last_activity > timeout:
                conn.consumer.schedule_close(
                    CloseCode.HEARTBEAT_TIMEOUT, ErrorCode.HEARTBEAT_TIMEOUT, "No frame received in time."
                )
            elif conn.token_expires_at is not None and conn.token_expires_at <= wall:
                conn.consumer.schedule_close(CloseCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, "The token expired.")
            elif send_ping and not conn.deliver(frame):
                conn.consumer.schedule_slow_consumer_close()

    async def flush(self) -> None:
        registry = self.runtime.registry
        if registry.pending_changes:
            await registry.flush()
            outages.succeeded(DATABASE)  # a write went through

    async def cleanup(self) -> None:
        runtime = self.runtime
        hub = runtime.hub
        # Presence lives in Redis, the registry in the database: one failing must not stop the other.
        await presence_reconcile(runtime)
        try:
            await runtime.registry.refresh(draining=hub.draining)
        except Exception as exc:
            self._registry_ok_since = None
            if service_of(exc) is None:
                raise
            outages.failed(DATABASE, exc)
            return
        outages.succeeded(DATABASE)
        now = time.monotonic()
        if self._registry_ok_since is None:
            self._registry_ok_since = now
        # Judge others only after refreshing our own row for as long as it takes to call an
        # instance dead: after a database outage every row is old, and the first instance
        # back would otherwise declare all the others dead (and announce their players gone).
        if now - self._registry_ok_since < settings.WEBSOCKET_CLEANUP_INTERVAL * DEAD_AFTER_INTERVALS:
            return
        for instance_id in await runtime.registry.dead_instances(settings.WEBSOCKET_CLEANUP_INTERVAL):
            logger.warning("instance %s stopped refreshing; removing its records", instance_id)
            await forget_instance(runtime, instance_id)

    async def revalidate(self) -> None:
        """Close connections whose user was deactivated, deleted or banned since they connected."""
        by_user: dict[str, list[Any]] = {}
        for conn in self.runtime.hub.connections.values():
            if conn.user_id and not conn.closing:
                by_user.setdefault(conn.user_id, []).append(conn)
        if not by_user:
            return
        rows = await database_sync_to_async(_user_states)(list(by_user))
        now = timezone.now()
        for user_id, conns in by_user.items():
            state = rows.get(user_id)
            if state is None or not state[0]:
                code, error, text = CloseCode.UNAUTHORIZED, ErrorCode.INVALID_TOKEN, "The account is no longer active."
            elif state[1] is not None and state[1] > now:
                code, error, text = CloseCode.FORBIDDEN, ErrorCode.BANNED, "You are banned."
            else:
                continue
            for conn in conns:
                conn.consumer.schedule_close(code, error, text)


def _user_states(user_ids: list[str]) -> dict[str, tuple[bool, Any]]:
    User = get_user_model()
    return {
        str(pk): (active, banned_until)
        for pk, active, banned_until in User.objects.filter(pk__in=user_ids).values_list(
            "pk", "is_active", "banned_until"
        )
    }


async def presence_reconcile(runtime: Runtime) -> None:
    """Make this instance's presence in the shared state match the connections it holds.

    Re-asserts every open connection (Redis may have restarted empty), removes entries of
    connections that closed while Redis failed and strays found by the previous run (two runs
    in a row, so a connection that opened just after the snapshot is never removed), and
    announces `offline` for users left with no connection and `online` for users whose
    connection opened during the outage. Entries of closes Redis never saw are removed only
    after one successful run, so every instance has re-asserted its own connections first
    (otherwise a user connected elsewhere would be announced offline after an empty restart).
    """
    hub = runtime.hub
    if hub.draining:
        return
    async with runtime.presence_lock:
        live = {c.id: (c.user_id, c.endpoint) for c in hub.connections.values() if c.user_id}
        gone = {conn_id: user_id for conn_id, user_id in runtime.presence_strays.items() if conn_id not in live}
        closes = dict(runtime.unconfirmed_closes) if runtime.presence_confirmed else {}
        gone.update(closes)
        try:
            result = await runtime.state.refresh_instance(runtime.instance_id, live, gone=gone)
        except Exception as exc:
            runtime.presence_confirmed = False
            outages.failed(REDIS, exc)
            return
        runtime.presence_confirmed = True
        runtime.presence_strays = result.strays
        for conn_id in closes:
            runtime.unconfirmed_closes.pop(conn_id, None)
        opened = [hub.connections[c] for c in runtime.unconfirmed_opens if c in hub.connections]
        runtime.unconfirmed_opens.clear()
    online = list(dict.fromkeys(conn.user_id for conn in opened if conn.user_id not in result.offline))
    if result.offline or online:
        logger.info("presence reconciled: %d users offline, %d online", len(result.offline), len(online))
        await announce_statuses(result.offline, "offline")
        await announce_statuses(online, "online")


async def announce_statuses(user_ids: list[str], status: str) -> None:
    from realtime.services import presence

    if not user_ids:
        return
    users = await database_sync_to_async(_users_for_status)(user_ids)
    for user_id, username, guild_id, party_id in users:
        await presence.announce_status(
            user_id=user_id, username=username, status=status, guild_id=guild_id, party_id=party_id
        )


async def forget_instance(runtime: Runtime, instance_id: str) -> None:
    """Remove a (dead or draining) instance: presence, feature state, then registry rows."""
    try:
        offline = await runtime.state.purge_instance(instance_id)
    except Exception as exc:
        logger.warning("could not purge presence of %s: %s", instance_id, exc)
        offline = []
    await announce_statuses(offline, "offline")
    for hook in runtime.instance_dead_hooks:
        try:
            await hook(instance_id)
        except Exception:
            logger.exception("instance-dead hook failed for %s", instance_id)
    await runtime.registry.remove_instance(instance_id)


def _users_for_status(user_ids: list[str]) -> list[tuple[str, str, Any, Any]]:
    User = get_user_model()
    return [
        (str(pk), username, guild_id, party_id)
        for pk, username, guild_id, party_id in User.objects.filter(pk__in=user_ids).values_list(
            "pk", "username", "guild_id", "party_id"
        )
    ]
