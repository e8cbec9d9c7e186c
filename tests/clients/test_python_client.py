"""`rpgrealtime.client` against a real server: a private Redis and daphne with a 1 s heartbeat and a
3 s silence timeout (tests/clients/conftest.py). Stream recovery runs once the server speaks 1.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rpgrealtime.client import CloseEvent, ConnectionRefused, RealtimeClient, Resync, ServerError
from tests.clients.conftest import mint_token, players
from tests.support.cluster import WsClient
from tests.support.proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def eventually(check, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(0.02)
    return value


@pytest.fixture
async def cast(live) -> dict[str, dict[str, str]]:
    server, _ = live
    return await players(server)


@pytest.fixture
async def opened(live) -> AsyncIterator[Any]:
    """`opened(endpoint, **options)` → a client of the live server (closed after the test)."""
    server, _ = live
    clients: list[RealtimeClient] = []

    def factory(endpoint: str, *, url: str | None = None, **options: Any) -> RealtimeClient:
        settings = {"backoff_initial": 0.1, "backoff_max": 1.0, "heartbeat_grace": 1.0, **options}
        clients.append(RealtimeClient(url or f"{server.ws}/ws/{endpoint}", **settings))
        return clients[-1]

    yield factory
    for client in clients:
        await client.close()


def logins(live, user: dict[str, str]):
    """A token source that signs in over HTTP, as a game would; records why it was asked."""
    server, _ = live
    reasons: list[str] = []

    async def get_token(reason: str) -> str:
        reasons.append(reason)
        status, tokens = await asyncio.to_thread(
            server.request, "POST", "/api/v1/auth/token/", {"username": user["username"], "password": user["password"]}
        )
        assert status == 200, tokens
        return tokens["access"]

    get_token.reasons = reasons  # type: ignore[attr-defined]
    return get_token


@pytest.fixture
async def proxy(live) -> AsyncIterator[TcpProxy]:
    server, _ = live
    running = await TcpProxy(server.port).start()
    yield running
    await running.stop()


async def test_connects_with_a_token_in_the_header_or_the_bearer_subprotocol(live, cast, opened):
    for transport in ("header", "subprotocol"):
        client = opened("chat", get_token=logins(live, cast["alice"]), token_transport=transport)
        established = await client.connect()
        assert established["endpoint"] == "chat"
        assert established["user"]["username"] == cast["alice"]["username"]
        assert established["heartbeat_interval"] == 1


@pytest.mark.parametrize(
    "case",
    [
        ("chat", None, 4401, "authentication_required"),
        ("game", "garbage", 4401, "invalid_token"),
        ("game", "refresh", 4401, "invalid_token"),
        ("world", "banned", 4403, "banned"),
    ],
)
async def test_refusals_are_surfaced_and_not_retried(live, cast, opened, case):
    server, _ = live
    endpoint, who, code, error = case
    if who == "refresh":
        _, tokens = await asyncio.to_thread(
            server.request, "POST", "/api/v1/auth/token/", {k: cast["alice"][k] for k in ("username", "password")}
        )
        token = tokens["refresh"]
    else:
        token = {"garbage": "not-a-jwt", "banned": cast["banned"]["access"], None: None}[who]
    client = opened(endpoint, token=token)
    with pytest.raises(ConnectionRefused) as refused:
        await client.connect()
    assert (refused.value.code, refused.value.error["code"]) == (code, error)
    assert client.state == "closed"
    assert client.last_close.action == "stop"


async def test_an_expired_token_is_replaced_then_the_connection_opens(live, cast, opened):
    fresh = logins(live, cast["alice"])
    expired = mint_token(cast["alice"]["id"], -60)
    asked: list[str] = []

    async def get_token(reason: str) -> str:
        asked.append(reason)
        return expired if len(asked) == 1 else await fresh(reason)

    client = opened("game", get_token=get_token)
    closes: list[CloseEvent] = []
    client.on("close", closes.append)
    established = await client.connect()
    assert established["user"]["id"] == cast["alice"]["id"]
    assert asked == ["connect", "refresh"]
    assert (closes[0].code, closes[0].error["code"], closes[0].action) == (4401, "token_expired", "refresh")


async def test_request_reply_and_error_replies(live, cast, opened):
    client = opened("chat", get_token=logins(live, cast["alice"]))
    await client.connect()
    history = await client.request({"type": "history_request", "channel": "global", "limit": 5})
    assert history["type"] == "history" and isinstance(history["messages"], list)
    ack = await client.request({"type": "chat_message", "channel": "global", "content": "hello from python"})
    assert ack["type"] == "ack" and len(ack["message_id"]) == 36
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    with pytest.raises(ServerError) as invalid:
        await client.request({"type": "chat_message", "channel": "global", "content": "   "})
    assert invalid.value.code == "invalid_message"
    with pytest.raises(ServerError) as unknown:
        await client.request({"type": "no_such_thing"})
    assert unknown.value.code == "unknown_type"
    assert (client.state, client.connects) == ("open", 1)


async def test_events_from_another_players_connection(live, cast, opened):
    alice = opened("chat", get_token=logins(live, cast["alice"]))
    bob = opened("chat", get_token=logins(live, cast["bob"]))
    await asyncio.gather(alice.connect(), bob.connect())
    heard = asyncio.create_task(bob.wait_for("chat_message", lambda f: f["content"] == "over here", timeout=5))
    await asyncio.sleep(0)
    await alice.send({"type": "chat_message", "channel": "global", "content": "over here"})
    assert (await heard)["user"] == cast["alice"]["username"]


async def test_pings_are_answered_so_the_connection_outlives_the_silence_timeout(live, cast, opened):
    server, _ = live
    client = opened("game", get_token=logins(live, cast["alice"]))
    await client.connect()
    pings: list[dict[str, Any]] = []
    client.on("ping", pings.append)
    await asyncio.sleep(4.5)  # longer than WEBSOCKET_CONNECTION_TIMEOUT (3 s)
    assert len(pings) >= 3
    assert (client.state, client.connects) == ("open", 1)
    # The same silence without pongs is closed with 4408: the check above can fail.
    silent = await WsClient.open(f"{server.ws}/ws/game")
    assert await silent.closed_with(6) == 4408


async def test_a_silent_drop_is_noticed_within_heartbeat_plus_grace(live, cast, opened, proxy):
    client = opened("game", url=proxy.url("/ws/game"), get_token=logins(live, cast["alice"]))
    await client.connect()
    last_ping = [time.monotonic()]
    client.on("ping", lambda _frame: last_ping.__setitem__(0, time.monotonic()))
    closed = asyncio.create_task(client.wait_for("close", timeout=10))
    await asyncio.sleep(0.3)
    stalled_at = time.monotonic()
    proxy.stall()
    close = await closed
    noticed, silent = time.monotonic() - stalled_at, time.monotonic() - last_ping[0]
    assert close.reason == "no frame for 2 s"
    # Given up 2 s after the last frame heard (a ping, 1 s apart), not before; so within 3.5 s.
    assert silent >= 1.8 and noticed < 3.5, (silent, noticed)
    await eventually(lambda: client.state == "open" and client.connects == 2)


async def test_a_reset_connection_is_reconnected(live, cast, opened, proxy):
    client = opened("chat", url=proxy.url("/ws/chat"), get_token=logins(live, cast["alice"]))
    await client.connect()
    closed = asyncio.create_task(client.wait_for("close", timeout=5))
    await asyncio.sleep(0)
    proxy.reset()
    assert (await closed).code == 1006
    await eventually(lambda: client.state == "open" and client.connects == 2)


async def test_the_token_is_renewed_in_band_without_reconnecting(live, cast, opened):
    fresh = logins(live, cast["alice"])
    asked: list[str] = []

    async def get_token(reason: str) -> str:
        asked.append(reason)
        # First a token that lasts 8 s (renewed at 6 s: signing in on a busy machine takes a
        # while), then ordinary ones.
        return mint_token(cast["alice"]["id"], 8) if len(asked) == 1 else await fresh(reason)

    client = opened("chat", get_token=get_token)
    started = time.monotonic()
    await client.connect()
    await client.wait_for("token_refreshed", timeout=10)
    # Past the first token's expiry: the server re-validates every second.
    await asyncio.sleep(max(0.0, started + 9.5 - time.monotonic()))
    assert (client.state, client.connects) == ("open", 1)
    assert asked == ["connect", "refresh"]


async def test_the_client_reconnects_after_the_server_restarts(live, cast, opened):
    _, control = live
    client = opened("game", get_token=logins(live, cast["alice"]))
    await client.connect()
    closes: list[CloseEvent] = []
    client.on("close", closes.append)
    await asyncio.to_thread(control.handle, "/restart", {})
    await eventually(lambda: client.state == "open" and client.connects >= 2, timeout=20)
    assert (closes[0].code, closes[0].action) == (1001, "reconnect")
    assert (await client.request({"type": "ping"}))["type"] == "pong"


# --- stream recovery (protocol 1.1) -------------------------------------------------------------


async def connect_for_recovery(client: RealtimeClient) -> dict[str, Any]:
    established = await client.connect()
    if not client.supports_resume:
        version = established.get("protocol", "1.0")
        pytest.skip(f"the server speaks protocol {version}; stream recovery needs 1.1")
    return established


async def test_resume_against_the_real_server(live, cast, opened, proxy):
    server, _ = live
    client = opened("game", url=proxy.url("/ws/game"), get_token=logins(live, cast["alice"]))
    heard: list[dict[str, Any]] = []
    resyncs: list[Resync] = []
    client.on("system_announcement", heard.append)
    client.on("resync", resyncs.append)
    established = await connect_for_recovery(client)
    assert "game" in established["streams"]
    staff = cast["staff"]["access"]

    async def announce(text: str) -> None:
        message = {"type": "system_announcement", "message": text, "level": "info"}
        status, body = await asyncio.to_thread(
            server.request, "POST", "/api/v1/websocket/publish", {"target": "game", "message": message}, staff
        )
        assert status == 202, body

    await announce("before")
    await eventually(lambda: len(heard) == 1)
    proxy.refusing = True
    closed = asyncio.create_task(client.wait_for("close", timeout=5))
    await asyncio.sleep(0)
    proxy.reset()
    await closed
    for n in (1, 2, 3):
        await announce(f"missed {n}")
    resumed = asyncio.create_task(client.wait_for("resumed", timeout=10))
    await asyncio.sleep(0)
    proxy.refusing = False
    reply = await resumed
    assert reply["streams"]["game"]["recovered"] is True
    assert reply["streams"]["game"]["missed"] == 3
    await announce("after")
    await eventually(lambda: len(heard) == 5)
    assert [frame["message"] for frame in heard] == ["before", "missed 1", "missed 2", "missed 3", "after"]
    found = [frame["offset"] for frame in heard]
    assert found == list(range(found[0], found[0] + 5))
    assert resyncs == []


async def test_resume_of_a_stream_the_player_may_not_read(live, cast, opened):
    stranger = "chat:guild:00000000-0000-4000-8000-000000000000"
    client = opened("chat", get_token=logins(live, cast["alice"]), streams={stranger: {"offset": 3, "epoch": "nope"}})
    resync = asyncio.create_task(client.wait_for("resync", timeout=5))
    try:
        await connect_for_recovery(client)
    except BaseException:
        resync.cancel()
        raise
    event = await resync
    assert event.stream == stranger
    assert event.reason in {"forbidden", "unknown_stream"}
