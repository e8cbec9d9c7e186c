"""`rpgrealtime.client` against a fake endpoint: every close code, dead connections, token renewal,
request/reply, and stream recovery as docs/protocol.md describes it (the real server's tests are in
test_python_client.py; its recovery tests run once it speaks protocol 1.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rpgrealtime.client import (
    Backoff,
    CloseEvent,
    ConnectionRefused,
    RealtimeClient,
    Resync,
    ServerError,
    StreamTracker,
    close_action,
    jwt_claims,
    renewal_delay,
)
from rpgrealtime.client.streams import MAX_RESUMED_STREAMS
from tests.clients.fakes import FakeServer, fake_jwt


async def eventually(check, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(0.01)
    return value


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    running = await FakeServer().start()
    yield running
    await running.stop()


class Recorder:
    """A client and what it reported."""

    def __init__(self, server: FakeServer, **options: Any) -> None:
        self.reasons: list[str] = []
        self.closes: list[CloseEvent] = []
        self.frames: list[dict[str, Any]] = []
        self.resyncs: list[Resync] = []
        self.resumed: list[dict[str, Any]] = []
        token_for = options.pop("token_for", None)

        def get_token(reason: str) -> str:
            self.reasons.append(reason)
            return token_for(reason) if token_for else f"token-{len(self.reasons)}"

        settings: dict[str, Any] = {
            "get_token": get_token,
            "backoff_initial": 0.02,
            "backoff_max": 0.04,
            "rate_limited_delay": 0.3,
            "request_timeout": 1.0,
        }
        self.client = RealtimeClient(server.url, **{**settings, **options})
        self.client.on("close", self.closes.append)
        self.client.on("system_announcement", self.frames.append)
        self.client.on("resync", self.resyncs.append)
        self.client.on("resumed", self.resumed.append)


@pytest.fixture
async def make(server: FakeServer) -> AsyncIterator[Any]:
    made: list[Recorder] = []

    def factory(**options: Any) -> Recorder:
        made.append(Recorder(server, **options))
        return made[-1]

    yield factory
    for recorder in made:
        await recorder.client.close()


def announce(n: int) -> dict[str, Any]:
    return {"type": "system_announcement", "message": f"m{n}", "level": "info"}


def offsets(frames: list[dict[str, Any]]) -> list[int]:
    return [frame["offset"] for frame in frames]


# --- pure rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error", "action"),
    [
        (1000, None, "reconnect"),
        (1001, "server_shutting_down", "reconnect"),
        (1006, None, "reconnect"),
        (4401, "token_expired", "refresh"),
        (4401, None, "refresh"),
        (4401, "invalid_token", "stop"),
        (4401, "authentication_required", "stop"),
        (4403, "banned", "stop"),
        (4403, "kicked", "stop"),
        (4408, "heartbeat_timeout", "reconnect"),
        (4413, None, "reconnect"),
        (4429, "too_many_connections", "reconnect_later"),
        (4503, "unavailable", "reconnect"),
    ],
)
def test_close_code_rules(code, error, action):
    assert close_action(code, error) == action


def test_backoff_full_jitter():
    top = Backoff(0.1, 1.0, rng=lambda: 0.999999)
    assert [round(top.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert Backoff(0.1, 1.0, rng=lambda: 0.0).next() == 0.0
    top.reset()
    assert round(top.next(), 3) == 0.1
    assert Backoff(rng=lambda: 0.5).long(10.0) == 15.0


def test_token_renewal_timing():
    assert jwt_claims("opaque") is None
    assert jwt_claims(fake_jwt(900, user_id="u1"))["user_id"] == "u1"
    assert renewal_delay(fake_jwt(900)) == 840
    assert renewal_delay(fake_jwt(8)) == 6
    assert renewal_delay("opaque") is None


def test_tracker_orders_held_frames_and_drops_duplicates():
    tracker = StreamTracker({"a": {"offset": 2, "epoch": "e"}})
    assert tracker.begin() == {"a": {"offset": 2, "epoch": "e"}}
    for offset in (5, 3, 4, 3, 2):
        assert tracker.receive({"type": "x", "stream": "a", "offset": offset, "epoch": "e"}) == []
    steps = tracker.finish({"streams": {"a": {"recovered": True, "missed": 3}}})
    assert [step["offset"] for step in steps] == [3, 4, 5]
    assert tracker.positions() == {"a": {"offset": 5, "epoch": "e"}}


def frame(stream: str, offset: int, kind: str = "x") -> dict[str, Any]:
    return {"type": kind, "stream": stream, "offset": offset, "epoch": "e"}


def test_tracker_forgets_streams_it_may_no_longer_read():
    tracker = StreamTracker({"chat:guild:g1": {"offset": 4, "epoch": "e"}, "chat:global": {"offset": 9, "epoch": "e"}})
    tracker.begin()
    steps = tracker.finish(
        {"streams": {"chat:guild:g1": {"recovered": False, "reason": "forbidden", "offset": 0, "epoch": ""}}}
    )
    assert steps == [Resync("chat:guild:g1", "forbidden", 0, "")]
    assert list(tracker.positions()) == ["chat:global"]  # not asked about again


def test_tracker_forgets_a_fight_once_it_ended_and_old_zones_when_the_zone_changes():
    tracker = StreamTracker()
    tracker.receive(frame("combat:s1", 1, "combat_state"))
    tracker.receive(frame("combat:s1", 2, "combat_end"))
    assert tracker.positions() == {}
    tracker.adopt({"world:starter_town": {"offset": 3, "epoch": "e"}})
    tracker.receive(
        {"type": "zone_changed", "zone": "dark_forest", "streams": {"world:dark_forest": {"offset": 8, "epoch": "e"}}}
    )
    assert tracker.positions() == {"world:dark_forest": {"offset": 8, "epoch": "e"}}


def test_tracker_resumes_the_most_recently_active_streams_and_resyncs_the_rest():
    tracker = StreamTracker()
    for n in range(MAX_RESUMED_STREAMS + 2):
        tracker.receive(frame(f"chat:party:p{n}", 1))
    tracker.receive(frame("chat:party:p0", 2))  # p0 is the most recently active again
    asked = tracker.begin()
    assert len(asked) == MAX_RESUMED_STREAMS and "chat:party:p0" in asked
    assert "chat:party:p1" not in asked and "chat:party:p2" not in asked
    steps = tracker.finish({"streams": {}})
    assert {step.stream for step in steps if isinstance(step, Resync)} == {"chat:party:p1", "chat:party:p2"}
    assert all(step.reason == "not_resumed" for step in steps if isinstance(step, Resync))


# --- lifecycle --------------------------------------------------------------------------------------


async def test_token_in_the_authorization_header_or_the_bearer_subprotocol(server, make):
    await make().client.connect()
    await make(token_transport="subprotocol").client.connect()
    assert server.tokens == ["token-1", "token-1"]
    assert server.connections[1].ws.subprotocol == "bearer"


@pytest.mark.parametrize("code", [1001, 1011, 4408, 4413, 4503])
async def test_close_codes_that_reconnect_at_once(server, make, code):
    recorder = make()
    await recorder.client.connect()
    before = len(server.connections)
    await server.last().close(code)
    await server.next_connection(before)
    await eventually(lambda: recorder.client.state == "open" and recorder.client.connects == 2)
    assert (recorder.closes[0].code, recorder.closes[0].action) == (code, "reconnect")
    assert recorder.closes[0].delay <= 0.02
    assert recorder.reasons == ["connect", "reconnect"]


async def test_a_dropped_connection_reconnects(server, make):
    recorder = make()
    await recorder.client.connect()
    before = len(server.connections)
    server.last().abort()
    await server.next_connection(before)
    assert recorder.closes[0].code == 1006


async def test_4429_waits_the_long_backoff(server, make):
    recorder = make()
    await recorder.client.connect()
    before = len(server.connections)
    started = time.monotonic()
    await server.last().close(4429, {"code": "rate_limited", "message": "Too many frames; closing."})
    await server.next_connection(before)
    assert time.monotonic() - started >= 0.29
    assert recorder.closes[0].action == "reconnect_later"
    assert 0.3 <= recorder.closes[0].delay < 0.6


async def test_4401_token_expired_gets_a_new_token_and_reconnects_at_once(server, make):
    recorder = make()
    await recorder.client.connect()
    before = len(server.connections)
    await server.last().close(4401, {"code": "token_expired", "message": "Token expired."})
    await server.next_connection(before)
    assert (recorder.closes[0].action, recorder.closes[0].delay) == ("refresh", 0.0)
    assert recorder.reasons == ["connect", "refresh"]
    assert server.tokens[-1] == "token-2"


async def test_4401_token_expired_again_and_again_stops(server, make):
    recorder = make(max_token_refreshes=2)
    server.refusals = [(4401, {"code": "token_expired", "message": "Token expired."})] * 5
    with pytest.raises(ConnectionRefused) as refused:
        await recorder.client.connect()
    assert refused.value.code == 4401
    assert [close.action for close in recorder.closes] == ["refresh", "refresh", "stop"]


@pytest.mark.parametrize(
    ("code", "error"), [(4401, "invalid_token"), (4401, "authentication_required"), (4403, "banned"), (4403, "kicked")]
)
async def test_refusals_stop_and_report(server, make, code, error):
    recorder = make()
    server.refusals = [(code, {"code": error, "message": f"refused: {error}"})]
    with pytest.raises(ConnectionRefused) as refused:
        await recorder.client.connect()
    assert (refused.value.code, refused.value.error["code"]) == (code, error)
    await asyncio.sleep(0.1)
    assert len(server.connections) == 1
    assert recorder.client.state == "closed"
    assert recorder.client.last_close.error["code"] == error
    # A person may decide to try again.
    recorder.client.reconnect_now()
    await eventually(lambda: recorder.client.state == "open")


async def test_a_silent_connection_is_dead_after_heartbeat_interval_plus_grace(server, make):
    server.heartbeat_interval = 0.2
    recorder = make(heartbeat_grace=0.1)
    await recorder.client.connect()
    before = len(server.connections)
    started = time.monotonic()
    await server.next_connection(before, timeout=2)
    assert 0.28 <= time.monotonic() - started < 1.0
    assert recorder.closes[0].reason == "no frame for 0.3 s"


async def test_pings_are_answered_and_keep_the_connection(server, make):
    server.heartbeat_interval = 0.2
    recorder = make(heartbeat_grace=0.1)
    await recorder.client.connect()
    conn = server.last()
    for _ in range(7):
        await conn.send({"type": "ping", "timestamp": "2026-11-26T10:00:00.000Z"})
        await asyncio.sleep(0.1)
    assert len(server.connections) == 1
    assert conn.received.count({"type": "pong"}) == 7


async def test_no_connection_established_in_time(server, make):
    server.silent_connections = 1
    recorder = make(connect_timeout=0.2)
    await recorder.client.connect()
    assert len(server.connections) == 2
    assert "no connection_established" in recorder.closes[0].reason


async def test_token_renewed_in_band_before_expiry(server, make):
    tokens = [fake_jwt(2), fake_jwt(600)]
    recorder = make(token_for=lambda reason: tokens.pop(0))
    await recorder.client.connect()
    refreshed = await recorder.client.wait_for("token_refreshed", timeout=3)
    assert refreshed["expires_at"]
    conn = server.last()
    sent = [frame for frame in conn.received if frame["type"] == "token_refresh"]
    assert len(sent) == 1 and conn.token == sent[0]["token"]
    assert recorder.reasons == ["connect", "refresh"]
    assert len(server.connections) == 1


async def test_request_reply_error_and_timeout(server, make):
    def answer(conn, frame):
        if frame["type"] == "history_request":
            return {"type": "history", "channel": "global", "messages": [], "has_more": False, "id": frame["id"]}
        if frame["type"] == "chat_message":
            return {"type": "error", "code": "invalid_message", "message": "Bad.", "id": frame["id"]}
        return None

    server.on_frame = answer
    recorder = make()
    with pytest.raises(ServerError) as offline:
        await recorder.client.request({"type": "ping"})
    assert offline.value.code == "not_connected"
    await recorder.client.connect()
    assert (await recorder.client.request({"type": "history_request", "channel": "global"}))["type"] == "history"
    errors: list[dict[str, Any]] = []
    recorder.client.on("error", errors.append)
    with pytest.raises(ServerError) as refused:
        await recorder.client.request({"type": "chat_message", "channel": "global", "content": ""})
    assert refused.value.code == "invalid_message"
    assert errors == []  # an error reply goes to its caller
    with pytest.raises(ServerError) as late:
        await recorder.client.request({"type": "nothing_answers"}, timeout=0.05)
    assert late.value.code == "timeout"
    pending = asyncio.create_task(recorder.client.request({"type": "nothing_answers"}))
    await asyncio.sleep(0.05)
    server.last().abort()
    with pytest.raises(ServerError) as dropped:
        await pending
    assert dropped.value.code == "not_connected"


async def test_async_handlers_may_await_requests(server, make):
    recorder = make()
    answers: list[dict[str, Any]] = []

    async def on_established(frame):
        answers.append(await recorder.client.request({"type": "ping"}))

    recorder.client.on("connection_established", on_established)
    await recorder.client.connect()
    await eventually(lambda: answers)
    assert answers[0]["type"] == "pong"


async def test_close_stops_for_good(server, make):
    recorder = make()
    await recorder.client.connect()
    await recorder.client.close()
    await asyncio.sleep(0.1)
    assert len(server.connections) == 1
    assert recorder.client.state == "closed"
    assert not await recorder.client.send({"type": "ping"})


# --- stream recovery ------------------------------------------------------------------------------


async def test_missed_frames_come_back_in_order_exactly_once(server, make):
    for n in (1, 2):
        await server.publish("game", announce(n), send=False)
    recorder = make()
    established = await recorder.client.connect()
    assert established["streams"] == {"game": {"offset": 2, "epoch": "e1"}}
    await server.publish("game", announce(3))
    await eventually(lambda: len(recorder.frames) == 1)

    before = len(server.connections)
    server.last().abort()
    for n in (4, 5, 6):
        await server.publish("game", announce(n), send=False)

    async def interleave(conn, frame):
        # A live frame overtakes the replay, a replayed one comes twice, the live one again after.
        live = await server.publish("game", announce(7), send=False)
        await conn.send(live)
        await conn.send(server.streams["game"].frames[4])
        await server.replay(conn, frame)
        await conn.send(live)
        return True

    server.on_resume = interleave
    again = await server.next_connection(before)
    await eventually(lambda: recorder.resumed)
    assert again.received[0]["type"] == "resume"
    assert again.received[0]["streams"] == {"game": {"offset": 3, "epoch": "e1"}}
    await asyncio.sleep(0.05)
    assert offsets(recorder.frames) == [3, 4, 5, 6, 7]
    assert recorder.resyncs == []
    assert recorder.client.streams.positions() == {"game": {"offset": 7, "epoch": "e1"}}


async def test_resume_is_the_first_frame_before_the_application_sends(server, make):
    await server.publish("game", announce(1), send=False)
    recorder = make()
    await recorder.client.connect()

    async def away(frame):
        await recorder.client.send({"type": "set_status", "status": "away"})

    recorder.client.on("connection_established", away)
    before = len(server.connections)
    await server.last().close(1001)
    again = await server.next_connection(before)
    await eventually(lambda: len(again.received) >= 2)
    assert [frame["type"] for frame in again.received] == ["resume", "set_status"]


async def test_epoch_changed_is_resynced_and_new_frames_delivered(server, make):
    await server.publish("game", announce(1), send=False)
    await server.publish("chat:global", {"type": "chat_message", "content": "hi"}, send=False)
    recorder = make()
    await recorder.client.connect()
    before = len(server.connections)
    server.last().abort()
    server.restart_stream("game", "e2")
    await server.publish("chat:global", {"type": "chat_message", "content": "missed"}, send=False)

    async def live_first(conn, frame):
        await conn.send(await server.publish("game", announce(1), send=False))
        await server.replay(conn, frame)
        return True

    server.on_resume = live_first
    await server.next_connection(before)
    await eventually(lambda: recorder.resumed)
    assert recorder.resyncs == [Resync("game", "epoch_changed", 1, "e2")]
    assert [(f["offset"], f["epoch"]) for f in recorder.frames] == [(1, "e2")]
    assert recorder.client.streams.positions() == {
        "game": {"offset": 1, "epoch": "e2"},
        "chat:global": {"offset": 2, "epoch": "e1"},
    }


async def test_too_old_and_unknown_streams_are_resynced(server, make):
    for n in (1, 2, 3):
        await server.publish("game", announce(n), send=False)
    recorder = make(streams={"combat:gone": {"offset": 4, "epoch": "x"}})
    await recorder.client.connect()
    await eventually(lambda: recorder.resumed)
    assert recorder.resyncs == [Resync("combat:gone", "unknown_stream", 0, "")]
    before = len(server.connections)
    server.last().abort()
    for n in range(4, 10):
        await server.publish("game", announce(n), send=False)
    server.forget("game", 5)
    await server.next_connection(before)
    await eventually(lambda: len(recorder.resumed) == 2)
    assert recorder.resyncs[-1] == Resync("game", "too_old", 9, "e1")
    assert recorder.frames == []
    await server.publish("game", announce(10))
    await eventually(lambda: recorder.frames)
    assert offsets(recorder.frames) == [10]


async def test_a_refused_or_unanswered_resume_resyncs_every_stream(server, make):
    await server.publish("game", announce(1), send=False)
    recorder = make(request_timeout=0.2, resume_timeout=0.2)
    await recorder.client.connect()
    before = len(server.connections)
    server.last().abort()

    async def refuse(conn, frame):
        await conn.send(await server.publish("game", announce(2), send=False))
        await conn.send({"type": "error", "code": "unknown_type", "message": "Unknown.", "id": frame["id"]})
        return True

    server.on_resume = refuse
    await server.next_connection(before)
    await eventually(lambda: recorder.resyncs and recorder.frames)
    assert recorder.resyncs == [Resync("game", "resume_failed", None, None)]
    assert offsets(recorder.frames) == [2]

    server.on_resume = None
    server.answer_resume = False
    before = len(server.connections)
    server.last().abort()
    await server.next_connection(before)
    await server.publish("game", announce(3))  # held: the stream is being resumed
    await asyncio.sleep(0.05)
    assert offsets(recorder.frames) == [2]
    await eventually(lambda: len(recorder.resyncs) == 2, timeout=1)
    assert offsets(recorder.frames) == [2, 3]


async def test_live_duplicates_dropped_gaps_and_new_epochs_reported(server, make):
    await server.publish("game", announce(1), send=False)
    recorder = make()
    await recorder.client.connect()
    conn = server.last()
    await conn.send(await server.publish("game", announce(2)))  # twice
    await server.publish("game", announce(3), send=False)  # skipped
    await server.publish("game", announce(4))
    await eventually(lambda: len(recorder.frames) == 2)
    assert offsets(recorder.frames) == [2, 4]
    assert recorder.resyncs == [Resync("game", "gap", 4, "e1")]
    server.restart_stream("game", "e9")
    await server.publish("game", announce(1))
    await eventually(lambda: len(recorder.resyncs) == 2)
    assert recorder.resyncs[1].reason == "epoch_changed"


async def test_a_v1_server_gets_no_resume(server, make):
    server.protocol = None
    recorder = make()
    await recorder.client.connect()
    assert not recorder.client.supports_resume
    before = len(server.connections)
    await server.last().close(1001)
    again = await server.next_connection(before)
    await again.send({"type": "system_announcement", "message": "hello", "level": "info"})
    await eventually(lambda: recorder.frames)
    assert again.received == []
