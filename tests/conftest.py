"""Shared fixtures: a fresh runtime and channel layer per test, users and tokens."""

from __future__ import annotations

import pytest
from channels.layers import channel_layers

from realtime import runtime as runtime_module
from realtime.outages import outages


@pytest.fixture(autouse=True)
async def fresh_runtime():
    """Each test gets its own event loop, so its own runtime, layer and shared state."""
    channel_layers.backends = {}
    runtime_module._runtimes.clear()
    runtime_module._states.clear()
    outages.reset()
    yield
    await runtime_module.reset_for_tests()
    channel_layers.backends = {}


@pytest.fixture
def fast_realtime(settings):
    """Short intervals so heartbeat, cleanup and re-validation happen within a test."""
    settings.WEBSOCKET_HEARTBEAT_INTERVAL = 0.2
    settings.WEBSOCKET_CONNECTION_TIMEOUT = 0.6
    settings.WEBSOCKET_CLEANUP_INTERVAL = 0.3
    settings.WEBSOCKET_TOKEN_REVALIDATE_INTERVAL = 0.3
    settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL = 0.1
    return settings
