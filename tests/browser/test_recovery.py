"""The /play/ page through real network drops (docs/protocol.md §12): a TCP proxy between page and
server cuts the WebSocket connections (a reset) or stops forwarding them (a silent drop, which
only the heartbeat notices). What was missed comes back by recovery, lands in the chat once and
counts as unread; a stream the server can no longer recover, and only that one, is read again.

Playwright's offline mode does not drop open WebSockets in Chromium, hence the proxy.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import eventually, start_server, stop_server
from tests.browser.test_play import PASSWORD, Traffic, assert_no_token_in, connected, submit_auth
from tests.support.cluster import WsClient
from tests.support.proxy import WebSocketProxy

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEARTBEAT_S = 2
# The page (its client library) calls a connection dead after heartbeat + 5 s without a frame.
DEAD_AFTER_S = HEARTBEAT_S + 5
KEPT = 5  # frames each stream keeps: more than this missed is too old to recover

expect.set_options(timeout=15_000)

# Every change of a connection pill (state, and its words without the countdown), with the
# time: a wait can be shorter than a poll, so the page records them itself.
RECORD_PILLS = """
(() => {
  window.pillLog = [];
  const last = {};
  const record = () => {
    for (const pill of document.querySelectorAll(".conn")) {
      const detail = pill.querySelector(".conn-detail")?.textContent || "";
      const key = `${pill.dataset.state}|${detail.replace(/ in \\d+ s$/, "")}`;
      if (last[pill.dataset.endpoint] === key) continue;
      last[pill.dataset.endpoint] = key;
      window.pillLog.push({ at: Date.now(), endpoint: pill.dataset.endpoint, state: pill.dataset.state, detail });
    }
  };
  new MutationObserver(record).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["data-state"],
  });
})();
"""


@pytest.fixture
def recovery_server(transactional_db):
    server = start_server(
        "recovery", env={"WEBSOCKET_HEARTBEAT_INTERVAL": str(HEARTBEAT_S), "RECOVERY_HISTORY_SIZE": str(KEPT)}
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
async def proxy(recovery_server):
    running = await WebSocketProxy(recovery_server.port).start()
    try:
        yield running
    finally:
        await running.stop()


class Frames:
    """Every frame the page sent and received, per endpoint, in order."""

    def __init__(self, page: Page) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        page.on("websocket", self._opened)

    def _opened(self, socket) -> None:
        endpoint = socket.url.rsplit("/", 1)[-1]
        socket.on("framesent", lambda payload: self.sent.append((endpoint, json.loads(payload))))
        socket.on("framereceived", lambda payload: self.received.append((endpoint, json.loads(payload))))

    def sent_since(self, mark: int, endpoint: str) -> list[dict[str, Any]]:
        return [frame for name, frame in self.sent[mark:] if name == endpoint and frame["type"] not in ("pong", "ping")]

    def resumed(self, endpoint: str, nth: int) -> dict[str, Any] | None:
        """The `nth` (from 1) `resumed` the page received on `endpoint`, once it has."""
        found = [frame for name, frame in self.received if name == endpoint and frame["type"] == "resumed"]
        return found[nth - 1] if len(found) >= nth else None


async def badge(page: Page, key: str) -> str:
    tab = page.locator(f'#chat-tabs button[data-key="{key}"] .badge')
    return await tab.inner_text() if await tab.count() else ""


async def shown_once(page: Page, text: str) -> None:
    await expect(page.locator("#chat-messages li.msg", has_text=re.compile(f"^.*{re.escape(text)}$"))).to_have_count(1)


async def test_recovered_messages_are_unread_once_and_only_a_lost_stream_is_read_again(recovery_server, proxy, browser):
    server = recovery_server
    traffic = Traffic()

    # Carol is in dave's invitation-only party before her page opens, so her chat connection
    # receives the party's stream from the start.
    _, dave_token = await asyncio.to_thread(server.register, "dave")
    _, carol_token = await asyncio.to_thread(server.register, "carol")
    status, party = await asyncio.to_thread(
        server.request, "POST", "/api/v1/parties/", {"name": "Night Watch"}, dave_token
    )
    assert status == 201, party
    invitations = f"/api/v1/parties/{party['id']}/invitations/"
    status, _ = await asyncio.to_thread(server.request, "POST", invitations, {"username": "carol"}, dave_token)
    assert status == 201
    status, _ = await asyncio.to_thread(
        server.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, carol_token
    )
    assert status == 200
    dave = await WsClient.open(f"{server.ws}/ws/chat", dave_token)  # straight to the server

    async def say(channel: str, content: str) -> None:
        reply = await dave.request({"type": "chat_message", "channel": channel, "content": content})
        assert reply["type"] == "ack", reply

    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.add_init_script(RECORD_PILLS)
    carol = await context.new_page()
    carol.on("request", lambda request: traffic.urls.append(request.url))
    carol.on("websocket", lambda socket: traffic.sockets.append(socket.url))
    carol.on("pageerror", lambda error: traffic.page_errors.append(str(error)))
    frames = Frames(carol)
    await carol.goto(f"{proxy.http}/play/")
    await submit_auth(carol, "login", "carol", PASSWORD)
    await connected(carol)
    await expect(carol.locator("#chat-tabs .tab.active")).to_have_attribute("data-key", "global")
    await say("global", "hello carol")
    await say("party", "before the drop")
    await shown_once(carol, "hello carol")
    await eventually(lambda: _equals(badge(carol, "party"), "1"))

    # 1. A reset (the network died): while carol is away, dave speaks in both channels. Back,
    #    the page resumes: the missed messages arrive once each, the party's as unread, and
    #    nothing is read again.
    proxy.refusing = True
    proxy.reset()
    await expect(carol.locator('.conn[data-endpoint="chat"]')).not_to_have_attribute("data-state", "open")
    await expect(carol.locator(".chat-panel")).to_have_attribute("data-stale", "true")
    await say("party", "missed in the party")
    await say("global", "missed in global")
    mark = len(frames.sent)
    proxy.refusing = False
    await connected(carol)
    await shown_once(carol, "missed in global")
    await eventually(lambda: _equals(badge(carol, "party"), "2"))
    resumed = await eventually(lambda: _value(frames.resumed("chat", 1)))
    chat_party = f"chat:party:{party['id']}"
    assert resumed["streams"]["chat:global"]["recovered"] is True, resumed
    assert resumed["streams"][chat_party] == {**resumed["streams"][chat_party], "recovered": True, "missed": 1}
    sent = frames.sent_since(mark, "chat")
    assert sent[0]["type"] == "resume", sent
    assert not [frame for frame in sent if frame["type"] == "history_request"], sent
    await expect(carol.locator(".chat-panel")).to_have_attribute("data-stale", "false")
    # In the party tab (its history loads now) each message shows once.
    await carol.click('#chat-tabs button[data-key="party"]')
    await shown_once(carol, "before the drop")
    await shown_once(carol, "missed in the party")
    await carol.click('#chat-tabs button[data-key="global"]')
    await shown_once(carol, "hello carol")

    # 2. A silent drop: nothing closes, nothing arrives. The page notices within heartbeat + 5 s,
    #    says so, and dims what may be out of date; reconnecting fails for now.
    proxy.refusing = True
    stalled_at = await carol.evaluate("Date.now()")
    proxy.stall()
    noticed = await eventually(
        lambda: _pill(carol, "chat", lambda entry: entry["detail"].startswith("No answer from the server")),
        timeout=DEAD_AFTER_S + 8,
    )
    assert noticed["at"] - stalled_at <= (DEAD_AFTER_S + 1.5) * 1000, (noticed, stalled_at)
    assert noticed["state"] == "waiting"
    for panel in (".chat-panel", ".world-panel", ".social-panel"):
        await expect(carol.locator(panel)).to_have_attribute("data-stale", "true")
    # Meanwhile more is said in global than the server keeps, and one message in the party.
    for number in range(1, KEPT + 3):
        await say("global", f"flood {number}")
    await say("party", "said while silent")

    # The network is back: the browser says so, and the page reconnects at once rather than
    # after the wait it was counting down.
    waiting = re.compile(r"reconnecting in (\d+) s$")
    await eventually(lambda: _long_wait(carol, waiting), timeout=60)
    proxy.refusing = False
    connects = int(await carol.locator('.conn[data-endpoint="chat"]').get_attribute("data-connects"))
    mark = len(frames.sent)
    await context.set_offline(True)
    await context.set_offline(False)
    await expect(carol.locator('.conn[data-endpoint="chat"]')).to_have_attribute(
        "data-connects", str(connects + 1), timeout=2_500
    )
    await connected(carol)

    # Global chat lost more than the server keeps: that conversation alone is read again (one
    # history page); the party's message is recovered, unread, and nothing else is re-read.
    resumed = await eventually(lambda: _value(frames.resumed("chat", 2)))
    assert resumed["streams"]["chat:global"]["recovered"] is False, resumed
    assert resumed["streams"]["chat:global"]["reason"] == "too_old", resumed
    assert resumed["streams"][chat_party]["recovered"] is True, resumed
    for number in range(1, KEPT + 3):
        await shown_once(carol, f"flood {number}")
    await shown_once(carol, "missed in global")
    await eventually(lambda: _equals(badge(carol, "party"), "1"))
    sent = frames.sent_since(mark, "chat")
    assert sent[0]["type"] == "resume", sent
    reread = [frame for frame in sent if frame["type"] == "history_request"]
    assert [frame["channel"] for frame in reread] == ["global"], sent
    assert not [frame for frame in frames.sent_since(mark, "combat") if frame["type"] == "combat_state_request"]
    for panel in (".chat-panel", ".world-panel", ".social-panel", ".combat-panel"):
        await expect(carol.locator(panel)).to_have_attribute("data-stale", "false")
    await carol.click('#chat-tabs button[data-key="party"]')
    await shown_once(carol, "said while silent")

    assert_no_token_in(traffic)
    assert traffic.page_errors == []
    await dave.close()


async def _equals(awaitable, expected):
    return await awaitable == expected


async def _value(value):
    return value


async def _pill(page: Page, endpoint: str, matches) -> dict[str, Any] | None:
    for entry in await page.evaluate("() => window.pillLog"):
        if entry["endpoint"] == endpoint and matches(entry):
            return entry
    return None


async def _long_wait(page: Page, waiting: re.Pattern) -> bool:
    """The chat pill counts down a wait of 3 s or more: long enough to tell "at once" from it."""
    found = waiting.search(await page.locator('.conn[data-endpoint="chat"] .conn-detail').inner_text())
    return bool(found and int(found.group(1)) >= 3)
