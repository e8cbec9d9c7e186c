"""Fixtures for end-to-end tests in headless Chromium: a real server process and a browser.

The browser is the system's Chromium (Debian's `chromium` package, or CHROMIUM=/path/to/it);
nothing is downloaded. When it is missing the tests fail and say how to install it: a browser
test that silently skips tests nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.support.cluster import ServerProcess
from tests.support.world import create_default_zones

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_server(name: str, env: dict[str, str] | None = None) -> ServerProcess:
    """One embedded instance (no Redis), as `scripts/serve` runs it, with the default zones."""
    create_default_zones()  # before the start: the instance reads the zones then
    return ServerProcess(name, redis=None, env=env).start()


def stop_server(server: ServerProcess) -> None:
    with contextlib.suppress(Exception):
        server.terminate(10)
    server.kill()


@pytest.fixture
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install -y chromium; "
            "scripts/test does this when run as root) or set CHROMIUM=/path/to/chromium.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium):
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):
    """Poll an async `check` until it returns something truthy; returns that value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(interval)
