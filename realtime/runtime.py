"""The node: the hub, the registry, the store and the housekeeping of one process, and the hooks
features register with it.

The runtime knows jobs and hooks, never features: `realtime/boot.py` installs the features
when the runtime starts. There is one runtime per event loop (one per server process; tests get
a fresh one per loop). It starts with the server (see `server_hooks.py`) or, failing that, with
the first connection, and drains on shutdown: every connection is closed with 1001 and the
instance's records go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.housekeeping import Housekeeping
from realtime.hub import ControlHandler, Hub
from realtime.outages import service_of
from realtime.protocol import CloseCode
from realtime.registry import Registry
from realtime.shards import LayerShards
from realtime.store import Store, get_store, reset_stores
from realtime.streams import reset_stream_logs

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0  # seconds a drain may take before the process exits anyway

T = TypeVar("T")
Job = Callable[[], Awaitable[Any]]
InstanceHook = Callable[[str], Awaitable[Any]]
Installer = Callable[["Runtime"], None]

_runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}


class Runtime:
    def __init__(self, *, instance_id: str, layer: Any, store: Store) -> None:
        self.instance_id = instance_id
        self.hub = Hub(layer, instance_id, LayerShards.from_settings())
        self.registry = Registry(instance_id, live=self.hub.connections)
        self.store = store
        self.started_at = time.time()
        self.jobs: list[tuple[str, Callable[[], float], Job]] = []
        self.instance_dead_hooks: list[InstanceHook] = []
        self.redis_recovered_hooks: list[Callable[[], Awaitable[Any]]] = []
        self._parts: dict[type, Any] = {}
        self._tasks: set[asyncio.Task] = set()
        self._housekeeping: Housekeeping | None = None
        self.drained = False

    # --- what features register --------------------------------------------------------------

    def every(self, name: str, interval: Callable[[], float], job: Job) -> None:
        """Run `job` periodically on this instance (interval read each time, for tests)."""
        self.jobs.append((name, interval, job))

    def on_instance_dead(self, hook: InstanceHook) -> None:
        """`hook(instance_id)` runs on the instance that cleans up after a dead (or drained) one,
        in the order hooks were registered, before the instance's registry rows go."""
        self.instance_dead_hooks.append(hook)

    def on_redis_recovered(self, hook: Callable[[], Awaitable[Any]]) -> None:
        """`hook()` runs once each time the watchdog sees Redis answer again after an outage."""
        self.redis_recovered_hooks.append(hook)

    def on_control(self, op: str, handler: ControlHandler) -> None:
        """`handler(connection, message)` runs for each local connection a control `op` reaches."""
        self.hub.register_control(op, handler)

    def provide(self, part: object) -> None:
        """Keep a feature's per-process object (a tracker, a cache) where its callers find it."""
        self._parts[type(part)] = part

    def get(self, kind: type[T]) -> T:
        """The object a feature provided; KeyError names what boot did not install."""
        try:
            return self._parts[kind]
        except KeyError:
            raise KeyError(f"{kind.__name__} is not installed on this runtime (see realtime/boot.py)") from None

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        """Run `coroutine` in the background: referenced until done (never collected mid-run),
        failures logged (an outage once, see realtime/outages.py), cancelled at drain."""
        task = asyncio.get_running_loop().create_task(self._guarded(coroutine, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guarded(coroutine: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            from_service = service_of(exc)
            if from_service is None:
                logger.exception("%s failed", name)
            else:
                logger.debug("%s failed: %s unavailable", name, from_service)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, install: Installer) -> None:
        await self.hub.start()
        install(self)
        self._housekeeping = Housekeeping(
            hub=self.hub, registry=self.registry, jobs=self.jobs, forget_instance=self.forget_instance
        )
        self._housekeeping.start()
        shards = self.hub.shards.count
        if shards > 1:
            logger.info("realtime instance %s started (channel layer on %d Redis servers)", self.instance_id, shards)
        else:
            logger.info("realtime instance %s started", self.instance_id)

    def close_all_now(self, code: int = CloseCode.GOING_AWAY) -> int:
        """Synchronously write a close frame to every connection (shutdown path)."""
        self.hub.draining = True
        connections = list(self.hub.connections.values())
        for conn in connections:
            conn.close_now(code)
        return len(connections)

    async def drain(self) -> None:
        """Stop accepting, close every connection with 1001, remove this instance's records."""
        if self.drained:
            return
        self.drained = True
        closed = self.close_all_now(CloseCode.GOING_AWAY)
        logger.info("draining instance %s: closed %d connections", self.instance_id, closed)
        try:
            # Registry rows first: they live in the database, so a hanging Redis (presence,
            # positions) cannot keep them behind; the rest is best effort within the bound.
            await asyncio.wait_for(self.registry.remove_instance(self.instance_id), SHUTDOWN_TIMEOUT / 2)
            await asyncio.wait_for(self.forget_instance(self.instance_id), SHUTDOWN_TIMEOUT / 2)
        except Exception:
            logger.exception("drain of %s did not finish cleanly", self.instance_id)
        await self.stop()

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.hub.stop()

    async def forget_instance(self, instance_id: str) -> None:
        """Remove a dead or drained instance: every feature forgets its part (presence, positions,
        combat connections), then its registry rows go. The one way instances are forgotten."""
        for hook in self.instance_dead_hooks:
            try:
                await hook(instance_id)
            except Exception:
                logger.exception("instance-dead hook failed for %s", instance_id)
        await self.registry.remove_instance(instance_id)

    async def redis_recovered(self) -> None:
        for hook in self.redis_recovered_hooks:
            try:
                await hook()
            except Exception:
                logger.exception("redis-recovered hook failed")


def running_runtime() -> Runtime | None:
    """The runtime of this server process (daphne runs one event loop), from any thread."""
    return next(iter(_runtimes.values()), None)


def current_runtime() -> Runtime | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _runtimes.get(loop)


async def ensure_runtime(install: Installer) -> Runtime:
    """This loop's runtime, started (with `install` wiring the features) on first use."""
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is not None:
        return runtime
    starting = _starting.get(loop)
    if starting is not None:
        return await asyncio.shield(starting)
    starting = _starting[loop] = loop.create_future()
    try:
        runtime = Runtime(instance_id=settings.INSTANCE_ID, layer=get_channel_layer(), store=get_store())
        await runtime.start(install)
        _runtimes[loop] = runtime
        starting.set_result(runtime)
        return runtime
    except BaseException as exc:
        starting.set_exception(exc)
        raise
    finally:
        _starting.pop(loop, None)


async def reset_for_tests() -> None:
    """Stop this loop's runtime and forget every cached store (tests only)."""
    runtime = _runtimes.pop(asyncio.get_running_loop(), None)
    if runtime is not None:
        await runtime.stop()
    await reset_stores()
    await reset_stream_logs()
