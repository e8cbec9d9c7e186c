"""Shared fixtures: a fresh runtime and channel layer per test, users and tokens."""

from __future__ import annotations

import time

import pytest
from channels.layers import channel_layers
from django.core.cache import cache
from django.test import TransactionTestCase

from accounts import throttling
from realtime import hub as hub_module
from realtime import runtime as runtime_module
from realtime import store, streams
from realtime.outages import outages
from tests.support.world import create_default_zones


def _flush_retrying_deadlocks(original):
    """PostgreSQL: a flush (TRUNCATE) can deadlock with a live server process's transaction in
    integration tests; the flush rolls back whole, so trying again is safe."""

    def teardown(self):
        for attempt in range(6):
            try:
                return original(self)
            except Exception as exc:
                chain = f"{exc!r} {exc.__cause__!r} {exc.__context__!r}"
                if "deadlock" not in chain.lower() or attempt == 5:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    return teardown


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)


@pytest.fixture(autouse=True)
async def fresh_runtime():
    """Each test gets its own event loop, so its own runtime, layer and shared state."""
    channel_layers.backends = {}
    runtime_module._runtimes.clear()
    store._stores.clear()
    streams._logs.clear()
    hub_module._hubs.clear()
    outages.reset()
    yield
    await runtime_module.reset_for_tests()
    channel_layers.backends = {}


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters (sign-up, token route) live in the process's cache: one test's
    requests must not throttle the next test."""
    cache.clear()
    throttling._local.clear()


@pytest.fixture(autouse=True)
def default_zones(request):
    """Transactional tests flush the rows data migrations created; put the default zones back."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None:
        transactional = marker.kwargs.get("transaction", False) or (marker.args and marker.args[0])
        request.getfixturevalue("transactional_db" if transactional else "db")
        create_default_zones()


@pytest.fixture
def fast_realtime(settings):
    """Short intervals so heartbeat, cleanup and re-validation happen within a test."""
    settings.WEBSOCKET_HEARTBEAT_INTERVAL = 0.2
    settings.WEBSOCKET_CONNECTION_TIMEOUT = 0.6
    settings.WEBSOCKET_CLEANUP_INTERVAL = 0.3
    settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL = 0.3
    settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL = 0.1
    return settings
