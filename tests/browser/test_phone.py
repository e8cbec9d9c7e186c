"""The /play/ page at a phone's size (390×844, touch) and a laptop's (1280×800): nothing scrolls
sideways, Log out stays in view, a tap on the map walks there, chat (with the typing indicator of
a message typed right after another), a fight, stale panels while a connection is down, and one
notice for a kick.

Set RPGRT_UPDATE_SCREENSHOT=1 to write docs/screenshot-phone.png from the phone run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.async_api import Page, expect

from tests.browser.conftest import eventually, start_server, stop_server
from tests.browser.test_play import (
    ENDPOINTS,
    PASSWORD,
    Traffic,
    assert_no_token_in,
    connected,
    position,
    seen_at,
    submit_auth,
)
from tests.support.cluster import ROOT, WsClient
from tests.support.db import db

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
PHONE_SCREENSHOT = ROOT / "docs" / "screenshot-phone.png"

expect.set_options(timeout=15_000)


@pytest.fixture
def play_server(transactional_db):
    server = start_server("phone")
    try:
        yield server
    finally:
        stop_server(server)


async def open_page(browser, server, traffic: Traffic, size: str) -> Page:
    touch = size == "phone"
    context = await browser.new_context(
        viewport=SIZES[size], has_touch=touch, is_mobile=touch, device_scale_factor=2 if touch else 1
    )
    page = await context.new_page()
    page.on("request", lambda request: traffic.urls.append(request.url))
    page.on("websocket", lambda socket: traffic.sockets.append(socket.url))
    page.on("pageerror", lambda error: traffic.page_errors.append(str(error)))
    return page


async def no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.body.scrollWidth, document.documentElement.clientWidth]"
    )
    assert max(widths[:2]) <= widths[2], f"the page is {max(widths[:2])} px wide in a {widths[2]} px window"


async def in_view(page: Page, selector: str) -> None:
    box = await page.locator(selector).bounding_box()
    width = page.viewport_size["width"]
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box, width)


async def tap_map(page: Page, touch: bool, x_fraction: float, y_fraction: float) -> None:
    canvas = page.locator("#world-canvas")
    box = await canvas.bounding_box()
    spot = {"x": box["width"] * x_fraction, "y": box["height"] * y_fraction}
    if touch:
        await canvas.tap(position=spot)
    else:
        await canvas.click(position=spot)


async def shot(page: Page, update: bool) -> None:
    """Always taken (a broken layout fails here); written to the docs only when asked."""
    # From the top, and without the toasts that float over whatever is under them.
    await page.evaluate("() => { document.querySelector('#toasts').replaceChildren(); window.scrollTo(0, 0); }")
    path = Path(tempfile.gettempdir()) / f"rpgrt-play-{page.viewport_size['width']}.png"
    await page.screenshot(path=path, full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    if update and os.environ.get("RPGRT_UPDATE_SCREENSHOT"):
        shutil.copyfile(path, PHONE_SCREENSHOT)


@pytest.mark.parametrize("size", ["phone", "desktop"])
async def test_play_at_phone_and_desktop_size(play_server, browser, size):
    server = play_server
    touch = size == "phone"
    traffic = Traffic()
    alice = await open_page(browser, server, traffic, size)
    bob = await open_page(browser, server, traffic, "desktop")

    # Alice's world connection can be held back (as if the network were gone) and closed.
    world_routes = []
    released = asyncio.Event()
    released.set()

    async def route_world(route):
        world_routes.append(route)
        await released.wait()
        route.connect_to_server()

    await alice.route_web_socket(re.compile(r".*/ws/world$"), route_world)
    # Where the server puts her each time she enters a zone (docs/protocol.md §7).
    entered: list[dict] = []

    def watch_world(socket) -> None:
        if socket.url.endswith("/ws/world"):
            socket.on("framereceived", lambda payload: _note_zone_changed(entered, payload))

    alice.on("websocket", watch_world)
    for page in (alice, bob):
        await page.goto(f"{server.http}/play/")
    await no_sideways_scroll(alice)
    await submit_auth(alice, "register", "alice", PASSWORD)
    await submit_auth(bob, "register", "bob", PASSWORD)
    await connected(alice)
    await connected(bob)
    alice_id = await alice.locator("body").get_attribute("data-user-id")

    # The layout: nothing sideways, down to 360 px; Log out and the chat box within reach.
    await no_sideways_scroll(alice)
    await in_view(alice, "#logout")
    if touch:
        await alice.set_viewport_size({"width": 360, "height": 740})
        await no_sideways_scroll(alice)
        await in_view(alice, "#logout")
        await alice.set_viewport_size(SIZES["phone"])
        await alice.click('.jump a[href="#chat-title"]')
        await expect(alice.locator("#chat-input")).to_be_in_viewport()

    # The map is drawn at the size it is shown, so its names are as readable as the page's text.
    canvas = alice.locator("#world-canvas")
    drawn_width = int(await canvas.get_attribute("width"))
    shown_width = (await canvas.bounding_box())["width"]
    ratio = await alice.evaluate("() => Math.min(window.devicePixelRatio, 2)") if touch else 1
    assert abs(drawn_width / shown_width - ratio) < 0.05 if touch else drawn_width == 640

    # Her own entry in a new guild says she is online (the snapshot may predate her presence).
    await alice.fill("#guild-box form[data-action=guild-create] input", "Pocket Guild")
    await alice.click("#guild-box form[data-action=guild-create] button")
    await expect(alice.locator(f'#guild-box li[data-user-id="{alice_id}"]')).to_have_attribute("data-status", "online")
    await no_sideways_scroll(alice)

    # A tap on the right of the map walks there (within bob's sight); he sees her arrive.
    await alice.locator("#world-canvas").scroll_into_view_if_needed()
    assert await position(alice) == ("starter_town", 500, 500)
    await tap_map(alice, touch, 0.65, 0.5)
    _, x, y = await eventually(lambda: _walked_right(position(alice)))
    assert y == 500
    await eventually(lambda: _arrived(alice))
    _, x, y = await position(alice)
    assert 550 < x < 600, x  # 75 units: the tap was 0.15 of the map's width right of centre
    await eventually(lambda: _equals(seen_at(bob, "alice"), (x, y)))

    # Chat both ways; a message typed right after another still shows "typing" to bob.
    await alice.fill("#chat-input", "hi from a small screen")
    await alice.press("#chat-input", "Enter")
    await expect(bob.locator("#chat-messages")).to_contain_text("hi from a small screen")
    await expect(bob.locator("#chat-typing")).to_have_text("")
    await alice.locator("#chat-input").press_sequentially("and another", delay=20)
    await expect(bob.locator("#chat-typing")).to_have_text("alice is typing…", timeout=5_000)
    await alice.press("#chat-input", "Enter")
    await expect(bob.locator("#chat-messages")).to_contain_text("and another")
    await bob.fill("#chat-input", "welcome, alice")
    await bob.press("#chat-input", "Enter")
    await expect(alice.locator("#chat-messages")).to_contain_text("welcome, alice")

    # A fight against a goblin, to the end.
    await alice.click("#combat-start")
    await expect(alice.locator("#combat")).to_have_attribute("data-status", "active")
    for _ in range(100):
        if await alice.locator("#combat").get_attribute("data-status") != "active":
            break
        attack = alice.locator("#combat-attack")
        if await attack.is_enabled():
            await attack.click()
        await asyncio.sleep(0.2)
    await expect(alice.locator("#combat-outcome")).to_have_attribute("data-outcome", re.compile("victory|defeat"))
    await no_sideways_scroll(alice)
    await shot(alice, update=touch)

    # The world connection drops and cannot come back for now: the map is shown as stale.
    world = alice.locator(".world-panel")
    await expect(world).to_have_attribute("data-stale", "false")
    released.clear()
    await world_routes[-1].close(code=1001, reason="going away")
    await expect(world).to_have_attribute("data-stale", "true")
    await expect(alice.locator(".chat-panel")).to_have_attribute("data-stale", "false")
    entries = len(entered)
    released.set()
    await expect(world).to_have_attribute("data-stale", "false", timeout=25_000)
    # Back in the world, she stands where the server says: her last position if it kept it
    # (WORLD_RESUME_SECONDS), else the spawn point; never a place the page assumed.
    await eventually(lambda: _more(entered, entries))
    last = entered[-1]
    await eventually(lambda: _equals(position(alice), (last["zone"], last["x"], last["y"])))

    # A moderator kicks alice: every connection closes, and she gets one notice, no toasts.
    await alice.evaluate("() => document.querySelector('#toasts').replaceChildren()")
    _, warden = await asyncio.to_thread(server.register, "warden")
    await db(get_user_model().objects.filter(username="warden").update)(is_staff=True)
    status, tokens = await asyncio.to_thread(
        server.request, "POST", "/api/v1/auth/token/", {"username": "warden", "password": PASSWORD}
    )
    assert status == 200
    moderator = await WsClient.open(f"{server.ws}/ws/chat", tokens["access"])
    done = await moderator.request({"type": "moderation", "action": "kick", "user_id": alice_id, "reason": "testing"})
    assert done["type"] == "ack", done
    await expect(alice.locator('.conn[data-state="stopped"]')).to_have_count(len(ENDPOINTS))
    notice = alice.locator("#session-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("A moderator removed you from the game.")
    await asyncio.sleep(1)
    assert await alice.locator("#toasts .toast").count() == 0
    await in_view(alice, "#session-notice button")
    await moderator.close()

    assert_no_token_in(traffic)
    assert traffic.page_errors == []


async def _walked_right(awaitable):
    zone, x, y = await awaitable
    return (zone, x, y) if x > 510 else None


async def _arrived(page: Page) -> bool:
    """Stopped walking: two readings a moment apart agree."""
    first = await position(page)
    await asyncio.sleep(0.3)
    return first == await position(page)


async def _equals(awaitable, expected):
    return await awaitable == expected


def _note_zone_changed(entered: list[dict], payload: str | bytes) -> None:
    frame = json.loads(payload)
    if frame.get("type") == "zone_changed":
        entered.append(frame)


async def _more(items: list, than: int) -> bool:
    return len(items) > than
