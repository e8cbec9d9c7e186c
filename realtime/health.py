"""Health checks of one instance: the answer of GET /api/v1/websocket/health and of the watchdog.

Three real round trips, run concurrently, each bounded so the answer comes within a second
even when Redis hangs or the database is unreachable:
- channel_layer: a probe message sent through the layer to a group only this instance's hub is
  in, and received back (a PUBLISH and a read from the subscription with Redis); one per Redis
  server when the layer is sharded (CHANNEL_LAYER_REDIS_URLS), each reported under `shards`;
- database: `SELECT 1` on a dedicated thread, so a hung database neither blocks nor is
  blocked by the request threads; nothing is ever written;
- shared_state: a PING to the Redis that holds presence and rate limits (always ok in memory).

Concurrent requests share one check in flight, so polling never piles up work on a sick
backend. Failures are reported by class name only: no hosts, SQL or paths in the body.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from realtime.hub import Hub
from realtime.store import Store

logger = logging.getLogger(__name__)

# 0.8 s per check; they run concurrently, so the answer stays under a second.
CHECK_TIMEOUT = 0.8
# A check still running after this long is abandoned (e.g. a probe lost while Redis was
# down) so the next request starts a fresh one instead of joining it forever.
ABANDON_AFTER = 5.0
PROBE_RESEND_AFTER = 0.5

_database_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-db")
_database_call: concurrent.futures.Future | None = None
_in_flight: dict[str, asyncio.Task] = {}


def _shared(name: str, check: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
    """Join the check of that name already running on this loop, or start one."""
    loop = asyncio.get_running_loop()
    task = _in_flight.get(name)
    if task is None or task.done() or task.get_loop() is not loop:
        task = _in_flight[name] = loop.create_task(asyncio.wait_for(check(), ABANDON_AFTER), name=f"health-{name}")
        # Retrieve the outcome even when every waiter timed out first (no "never retrieved").
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return asyncio.shield(task)


async def _timed(name: str, check: Callable[[], Awaitable[Any]], timeout: float = CHECK_TIMEOUT) -> dict[str, Any]:
    started = time.perf_counter()

    def elapsed() -> float:
        return round((time.perf_counter() - started) * 1000, 2)

    try:
        await asyncio.wait_for(_shared(name, check), timeout)
    except TimeoutError:
        return {"status": "error", "error": "timeout", "latency_ms": elapsed()}
    except Exception as exc:  # the class name only: no hosts, paths or SQL leak out
        return {"status": "error", "error": type(exc).__name__, "latency_ms": elapsed()}
    return {"status": "ok", "latency_ms": elapsed()}


async def _channel_layer_roundtrip(hub: Hub, shard: int) -> None:
    while True:
        # A probe published in the instant Redis came back, before the hub's subscription was
        # renewed, is lost: send another rather than report red until it is abandoned.
        try:
            await asyncio.wait_for(hub.probe(shard), PROBE_RESEND_AFTER)
            return
        except TimeoutError:
            continue


def _channel_layer_summary(shards: list[dict[str, Any]]) -> dict[str, Any]:
    """One layer server: its check. Several: ok when every one is, the slowest latency, the
    first real error (a refusal says more than a timeout), and each server's own check."""
    if len(shards) == 1:
        return shards[0]
    errors = [check["error"] for check in shards if check["status"] != "ok"]
    summary: dict[str, Any] = {
        "status": "error" if errors else "ok",
        "latency_ms": max(check["latency_ms"] for check in shards),
    }
    if errors:
        summary["error"] = next((error for error in errors if error != "timeout"), errors[0])
    summary["shards"] = shards
    return summary


def describe_failures(checks: dict[str, dict[str, Any]]) -> str:
    """The failing checks for a log line: `channel_layer=ConnectionError (shard 1), database=timeout`."""
    parts = []
    for name, check in checks.items():
        if check["status"] == "ok":
            continue
        failing = [str(n) for n, shard in enumerate(check.get("shards", ())) if shard["status"] != "ok"]
        where = f" (shard {', '.join(failing)})" if failing else ""
        parts.append(f"{name}={check.get('error')}{where}")
    return ", ".join(parts)


def _select_one() -> None:
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        close_old_connections()


async def _database_roundtrip() -> None:
    # A call stuck in the database thread is waited for again, never queued behind: at most
    # one health query is ever outstanding against a hung database.
    global _database_call
    if _database_call is None or _database_call.done():
        _database_call = _database_thread.submit(_select_one)
    await asyncio.wrap_future(_database_call)


async def run_checks(*, hub: Hub, store: Store, timeout: float = CHECK_TIMEOUT) -> dict[str, dict[str, Any]]:
    """The three checks, concurrently, each bounded (the health route and the outage watchdog)."""
    *shards, database, shared_state = await asyncio.gather(
        *(
            _timed(f"channel_layer.{shard}", functools.partial(_channel_layer_roundtrip, hub, shard), timeout)
            for shard in range(hub.shards.count)
        ),
        _timed("database", _database_roundtrip, timeout),
        _timed("shared_state", store.ping, timeout),
    )
    layer = _channel_layer_summary(shards)
    layer["backend"] = "memory" if settings.REDIS is None else "redis"
    return {"channel_layer": layer, "database": database, "shared_state": shared_state}
