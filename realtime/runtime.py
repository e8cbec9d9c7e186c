"""The node: wires the hub, the registry, the shared state and the housekeeping of one process.

There is one runtime per event loop (one per server process; tests get a fresh one per loop).
It starts with the server (see `server_hooks.py`) or, failing that, with the first connection,
and drains on shutdown: every connection is closed with 1001 and the instance's records go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from realtime.hub import Hub
from realtime.protocol import CloseCode
from realtime.registry import Registry
from realtime.store import SharedState, build_shared_state

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0  # seconds a drain may take before the process exits anyway

_runtimes: dict[asyncio.AbstractEventLoop, Runtime] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Future] = {}
_states: dict[Any, SharedState] = {}


class Runtime:
    def __init__(self, *, instance_id: str, layer: Any, state: SharedState) -> None:
        self.instance_id = instance_id
        self.hub = Hub(layer, instance_id)
        self.registry = Registry(instance_id, live=self.hub.connections)
        self.state = state
        self.started_at = time.time()
        self._jobs: list[tuple[str, Callable[[], float], Callable[[], Awaitable[Any]]]] = []
        self._instance_dead_hooks: list[Callable[[str], Awaitable[Any]]] = []
        self._housekeeping: Any = None
        self.drained = False
        # Presence changes the shared state did not confirm (Redis failed): housekeeping
        # reconciles them once it answers again (`housekeeping.presence_reconcile`).
        self.unconfirmed_opens: set[str] = set()  # connection ids; `online` may be unannounced
        self.unconfirmed_closes: dict[str, str] = {}  # connection id -> user id; entry may remain
        self.presence_strays: dict[str, str] = {}  # entries found for connections we do not hold
        self.presence_confirmed = False  # the last reconciliation succeeded
        self.presence_lock = asyncio.Lock()

    # --- extension points used by the feature services ---------------------------------------

    def every(self, name: str, interval: Callable[[], float], job: Callable[[], Awaitable[Any]]) -> None:
        """Run `job` periodically on this instance (interval read each time, for tests)."""
        self._jobs.append((name, interval, job))

    def on_instance_dead(self, hook: Callable[[str], Awaitable[Any]]) -> None:
        """`hook(instance_id)` runs on the instance that cleans up after a dead one."""
        self._instance_dead_hooks.append(hook)

    @property
    def jobs(self) -> list[tuple[str, Callable[[], float], Callable[[], Awaitable[Any]]]]:
        return self._jobs

    @property
    def instance_dead_hooks(self) -> list[Callable[[str], Awaitable[Any]]]:
        return self._instance_dead_hooks

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from realtime.features import install_features
        from realtime.housekeeping import Housekeeping

        await self.hub.start()
        install_features(self)
        self._housekeeping = Housekeeping(self)
        self._housekeeping.start()
        logger.info("realtime instance %s started", self.instance_id)

    def close_all_now(self, code: int = CloseCode.GOING_AWAY) -> int:
        """Synchronously write a close frame to every connection (shutdown path)."""
        self.hub.draining = True
        connections = list(self.hub.connections.values())
        for conn in connections:
            conn.consumer.close_now(code)
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
        if self._housekeeping is not None:
            self._housekeeping.stop()
        await self.hub.stop()

    async def forget_instance(self, instance_id: str) -> None:
        """Remove an instance's presence, positions and registry records, announcing departures."""
        from realtime.housekeeping import forget_instance

        await forget_instance(self, instance_id)


def current_runtime() -> Runtime | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _runtimes.get(loop)


async def ensure_runtime() -> Runtime:
    loop = asyncio.get_running_loop()
    runtime = _runtimes.get(loop)
    if runtime is not None:
        return runtime
    starting = _starting.get(loop)
    if starting is not None:
        return await asyncio.shield(starting)
    starting = _starting[loop] = loop.create_future()
    try:
        runtime = Runtime(instance_id=settings.INSTANCE_ID, layer=get_channel_layer(), state=get_shared_state())
        await runtime.start()
        _runtimes[loop] = runtime
        starting.set_result(runtime)
        return runtime
    except BaseException as exc:
        starting.set_exception(exc)
        raise
    finally:
        _starting.pop(loop, None)


def get_shared_state() -> SharedState:
    """The shared state for this process (memory) or this event loop (Redis clients are per loop)."""
    if settings.REDIS is None:
        key: Any = "memory"
    else:
        try:
            key = asyncio.get_running_loop()
        except RuntimeError:
            key = None
    state = _states.get(key)
    if state is None:
        state = _states[key] = build_shared_state()
    return state


async def reset_for_tests() -> None:
    """Stop this loop's runtime and forget every cached state (tests only)."""
    loop = asyncio.get_running_loop()
    runtime = _runtimes.pop(loop, None)
    if runtime is not None:
        if runtime._housekeeping is not None:
            runtime._housekeeping.stop()
        await runtime.hub.stop()
    for key, state in list(_states.items()):
        if key in (loop, "memory"):
            _states.pop(key, None)
            with contextlib.suppress(Exception):
                await state.close()
