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

from realtime.protocol import CloseCode, ErrorCode, encode, now_iso
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
                self._maybe("flush", settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL, self.runtime.registry.flush)
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
            logger.warning("housekeeping job %s failed: %s", name, exc)

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

    async def cleanup(self) -> None:
        runtime = self.runtime
        hub = runtime.hub
        await runtime.registry.refresh(draining=hub.draining)
        authenticated = {c.id: (c.user_id, c.endpoint) for c in hub.connections.values() if c.user_id}
        try:
            await runtime.state.refresh_instance(runtime.instance_id, authenticated)
        except Exception as exc:
            logger.warning("could not refresh presence: %s", exc)
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


async def forget_instance(runtime: Runtime, instance_id: str) -> None:
    """Remove a (dead or draining) instance: presence, feature state, then registry rows."""
    from realtime.services import presence

    try:
        offline = await runtime.state.purge_instance(instance_id)
    except Exception as exc:
        logger.warning("could not purge presence of %s: %s", instance_id, exc)
        offline = []
    if offline:
        users = await database_sync_to_async(_users_for_status)(offline)
        for user_id, username, guild_id, party_id in users:
            await presence.announce_status(
                user_id=user_id, username=username, status="offline", guild_id=guild_id, party_id=party_id
            )
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
