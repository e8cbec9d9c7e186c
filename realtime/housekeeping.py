"""Periodic work of one instance: heartbeats and timeouts, registry flushes, liveness, cleanup of
dead instances, token re-validation, and the jobs features register with the runtime.

One task ticks a few times per shortest interval; each job runs as its own task and never
overlaps itself, so a slow database never delays heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from realtime import metrics
from realtime.connection import Connection
from realtime.hub import Hub
from realtime.outages import DATABASE, outages, service_of
from realtime.protocol import CloseCode, ErrorCode, encode, now_iso
from realtime.registry import DEAD_AFTER_INTERVALS, Registry
from realtime.transport import OutboundFrame

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


class Housekeeping:
    """The periodic jobs of one runtime. It is handed the parts it works on and `forget_instance`
    (the runtime's), so it knows nothing above the node layer."""

    def __init__(
        self,
        *,
        hub: Hub,
        registry: Registry,
        jobs: list[tuple[str, Callable[[], float], Job]],
        forget_instance: Callable[[str], Awaitable[Any]],
    ) -> None:
        self.hub = hub
        self.registry = registry
        self.jobs = jobs
        self.forget_instance = forget_instance
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
                started = time.perf_counter()
                self.heartbeat()
                metrics.HOUSEKEEPING_SECONDS.labels("heartbeat").observe(time.perf_counter() - started)
                self._maybe("flush", settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL, self.flush)
                self._maybe("cleanup", settings.WEBSOCKET_CLEANUP_INTERVAL, self.cleanup)
                self._maybe("revalidate", settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL, self.revalidate)
                for name, interval, job in self.jobs:
                    self._maybe(name, interval(), job)
            except Exception:
                logger.exception("housekeeping tick failed")

    def _maybe(self, name: str, every: float, job: Job) -> None:
        last = self._last_run.get(name)
        if last is not None and time.monotonic() - last < every:
            return
        if name in self._running and not self._running[name].done():
            return
        self._spawn(name, job)

    def _spawn(self, name: str, job: Job) -> None:
        self._last_run[name] = time.monotonic()
        self._running[name] = asyncio.get_running_loop().create_task(self._guarded(name, job), name=f"job-{name}")

    @staticmethod
    async def _guarded(name: str, job: Job) -> None:
        started = time.perf_counter()
        try:
            await job()
            metrics.HOUSEKEEPING_SECONDS.labels(name).observe(time.perf_counter() - started)
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
        send_ping = now - self._last_ping >= settings.WEBSOCKET_HEARTBEAT_INTERVAL
        if send_ping:
            self._last_ping = now
            frame = OutboundFrame(encode({"type": "ping", "timestamp": now_iso()}))
        timeout = settings.WEBSOCKET_CONNECTION_TIMEOUT
        for conn in list(self.hub.connections.values()):
            if conn.closing:
                continue
            if now - conn.last_activity > timeout:
                conn.close(CloseCode.HEARTBEAT_TIMEOUT, ErrorCode.HEARTBEAT_TIMEOUT, "No frame received in time.")
            elif conn.token_expires_at is not None and conn.token_expires_at <= wall:
                conn.close(CloseCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, "The token expired.")
            elif send_ping and not conn.deliver(frame):
                conn.close_slow()

    async def flush(self) -> None:
        if self.registry.pending_changes:
            await self.registry.flush()
            outages.succeeded(DATABASE)  # a write went through

    async def cleanup(self) -> None:
        """Refresh this instance's liveness; forget instances that stopped refreshing theirs."""
        try:
            await self.registry.refresh(draining=self.hub.draining)
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
        for instance_id in await self.registry.dead_instances(settings.WEBSOCKET_CLEANUP_INTERVAL):
            logger.warning("instance %s stopped refreshing; removing its records", instance_id)
            await self.forget_instance(instance_id)

    async def revalidate(self) -> None:
        """Close connections whose user was deactivated, deleted or banned since they connected."""
        by_user: dict[str, list[Connection]] = {}
        for conn in self.hub.connections.values():
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
                conn.close(code, error, text)


# Users per query: an instance may hold 20,000 connections, and SQLite limits a query's parameters.
REVALIDATE_CHUNK = 500


def _user_states(user_ids: list[str]) -> dict[str, tuple[bool, Any]]:
    User = get_user_model()
    states: dict[str, tuple[bool, Any]] = {}
    for start in range(0, len(user_ids), REVALIDATE_CHUNK):
        chunk = user_ids[start : start + REVALIDATE_CHUNK]
        for pk, active, banned_until in User.objects.filter(pk__in=chunk).values_list(
            "pk", "is_active", "banned_until"
        ):
            states[str(pk)] = (active, banned_until)
    return states
