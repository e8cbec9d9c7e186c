"""Stream positions and recovery across real daphne instances and a real Redis
(docs/protocol.md §12): offsets assigned in publish order by Redis, identical and gap-free on
every instance under concurrent publishers; `resume` after a plain disconnect, after the
client's instance was killed (SIGKILL), after Redis restarted empty (the epoch changed); too old;
forbidden; a fight's frames after its turns timed out while the player was away.

This module starts its own clusters (it kills instances and restarts Redis).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pair(django_db_blocker):
    with django_db_blocker.unblock():
        # Turns of 1 s: a fight's timeouts happen while its player is away, within a test.
        cluster = Cluster(size=2, env={"RECOVERY_HISTORY_SIZE": "500", "COMBAT_TURN_TIMEOUT": "1"}).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def player() -> str:
    return access_token(await db(make_user)())


async def chat(server, token: str) -> WsClient:
    client = await WsClient.open(f"{server.ws}/ws/chat", token)
    await client.request({"type": "ping"})  # not resuming: live frames flow at once
    return client


def position(frame: dict) -> dict:
    return {"offset": frame["offset"], "epoch": frame["epoch"]}


async def drain(client: WsClient, frame_type: str, n: int, timeout: float = 15.0) -> list[dict]:
    return [await client.recv_type(frame_type, timeout=timeout) for _ in range(n)]


async def test_offsets_are_gap_free_and_the_same_on_every_instance_under_concurrent_publishers(pair):
    a, b = pair[0], pair[1]
    readers = [await chat(a, await player()), await chat(b, await player())]
    start = readers[0].established["streams"]["chat:global"]
    writers = [await chat(server, await player()) for server in (a, b, a, b)]
    per_writer = 50

    async def write(client: WsClient, tag: int) -> None:
        for n in range(per_writer):
            await client.send({"type": "chat_message", "channel": "global", "content": f"w{tag}-{n}"})
            await asyncio.sleep(0.002)

    await asyncio.gather(*(write(client, tag) for tag, client in enumerate(writers)))
    total = per_writer * len(writers)
    seen = [await drain(reader, "chat_message", total) for reader in readers]
    expected = list(range(start["offset"] + 1, start["offset"] + total + 1))
    for frames in seen:
        assert [f["offset"] for f in frames] == expected  # gap-free, in order
        assert {f["epoch"] for f in frames} == {start["epoch"]}
    # The same frame has the same offset on both instances.
    assert [(f["message_id"], f["offset"]) for f in seen[0]] == [(f["message_id"], f["offset"]) for f in seen[1]]
    for client in readers + writers:
        await client.close()


async def test_resume_after_a_disconnect_and_what_cannot_be_recovered(pair):
    a, b = pair[0], pair[1]
    reader_token = await player()
    reader = await chat(a, reader_token)
    writer = await chat(b, await player())
    await writer.send({"type": "chat_message", "channel": "global", "content": "seen"})
    seen = position(await reader.recv_type("chat_message"))
    await reader.close()
    for n in range(5):
        await writer.request({"type": "chat_message", "channel": "global", "content": f"missed {n}"})
    back = await WsClient.open(f"{b.ws}/ws/chat", reader_token)  # another instance this time
    assert back.established["streams"]["chat:global"] == {"offset": seen["offset"] + 5, "epoch": seen["epoch"]}
    reply = await back.request({"type": "resume", "streams": {"chat:global": seen}})
    replayed = [f for f in back.received if f.get("type") == "chat_message"]
    assert [f["content"] for f in replayed] == [f"missed {n}" for n in range(5)]
    assert [f["offset"] for f in replayed] == list(range(seen["offset"] + 1, seen["offset"] + 6))
    assert reply["streams"]["chat:global"] == {
        "recovered": True,
        "missed": 5,
        **back.established["streams"]["chat:global"],
    }
    # Exactly as first sent: the same message ids and timestamps.
    assert len({f["message_id"] for f in replayed}) == 5
    stale = await back.request({"type": "resume", "streams": {"chat:global": {"offset": 0, "epoch": "old"}}})
    assert stale["streams"]["chat:global"]["reason"] == "epoch_changed"
    other = f"chat:guild:{'0' * 8}-0000-0000-0000-{'0' * 12}"
    refused = await back.request({"type": "resume", "streams": {other: {"offset": 0, "epoch": ""}}})
    assert refused["streams"][other]["reason"] == "forbidden"
    for client in (back, writer):
        await client.close()


@pytest.fixture
def small_history(django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=1, env={"RECOVERY_HISTORY_SIZE": "3"}).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_a_stream_that_kept_too_little_is_too_old(small_history):
    a = small_history[0]
    token = await player()
    reader = await chat(a, token)
    writer = await chat(a, await player())
    await writer.send({"type": "chat_message", "channel": "global", "content": "seen"})
    seen = position(await reader.recv_type("chat_message"))
    await reader.close()
    for n in range(4):
        await writer.request({"type": "chat_message", "channel": "global", "content": f"m{n}"})
    back = await WsClient.open(f"{a.ws}/ws/chat", token)
    reply = await back.request({"type": "resume", "streams": {"chat:global": seen}})
    assert reply["streams"]["chat:global"]["reason"] == "too_old"
    assert not [f for f in back.received if f.get("type") == "chat_message"]
    await back.close()
    await writer.close()


async def test_resume_after_the_clients_instance_was_killed(pair):
    a, b = pair[0], pair[1]
    token = await player()
    victim = await chat(a, token)
    announcer = await chat(b, await player())
    await announcer.send({"type": "chat_message", "channel": "global", "content": "before"})
    seen = position(await victim.recv_type("chat_message"))
    a.kill()  # SIGKILL: no drain, no close frame
    assert await victim.closed_with(10) in (None, 1006)
    for n in range(10):
        await announcer.request({"type": "chat_message", "channel": "global", "content": f"while away {n}"})
    started = time.monotonic()
    back = await WsClient.open(f"{b.ws}/ws/chat", token)
    reply = await back.request({"type": "resume", "streams": {"chat:global": seen}})
    took = time.monotonic() - started
    entry = reply["streams"]["chat:global"]
    assert entry["recovered"] is True and entry["missed"] == 10
    print(f"FIGURE resume on the survivor after SIGKILL: connected and recovered 10 frames in {took * 1000:.0f} ms")
    contents = [f["content"] for f in back.received if f.get("type") == "chat_message"]
    assert contents == [f"while away {n}" for n in range(10)]
    await back.close()
    await announcer.close()


async def test_a_redis_restart_changes_the_epoch(pair):
    a = pair[0]
    token = await player()
    reader = await chat(a, token)
    writer = await chat(a, await player())
    await writer.send({"type": "chat_message", "channel": "global", "content": "before"})
    seen = position(await reader.recv_type("chat_message"))
    await reader.close()
    pair.redis.stop()
    pair.redis.start()  # empty: nothing is persisted
    back = None
    for _ in range(100):  # the instances reconnect to Redis by themselves
        try:
            back = await WsClient.open(f"{a.ws}/ws/chat", token)
            if back.established["streams"].get("chat:global"):
                break
        except Exception:
            pass
        await asyncio.sleep(0.2)
    assert back is not None
    now = back.established["streams"]["chat:global"]
    assert now["epoch"] != seen["epoch"] and now["offset"] == 0
    reply = await back.request({"type": "resume", "streams": {"chat:global": seen}})
    assert reply["streams"]["chat:global"] == {"recovered": False, "reason": "epoch_changed", **now}
    await back.close()
    await writer.close()


async def test_frames_reach_a_raw_client_that_resumes_first_in_order(pair):
    """A client that sends `resume` as soon as it is connected, while frames keep coming, gets
    the past, then the present, each frame once and in offset order."""
    a, b = pair[0], pair[1]
    token = await player()
    reader = await chat(a, token)
    writer = await chat(b, await player())
    await writer.send({"type": "chat_message", "channel": "global", "content": "seen"})
    seen = position(await reader.recv_type("chat_message"))
    await reader.close()
    stop = asyncio.Event()

    async def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            await writer.send({"type": "chat_message", "channel": "global", "content": f"live {n}"})
            n += 1
            await asyncio.sleep(0.005)

    writing = asyncio.ensure_future(keep_writing())
    await asyncio.sleep(0.3)
    back = await WsClient.open(f"{a.ws}/ws/chat", token)
    await back.connection.send(json.dumps({"type": "resume", "streams": {"chat:global": seen}, "id": "r"}))
    await asyncio.sleep(0.5)
    stop.set()
    await writing
    await back.recv_type("resumed", timeout=10)
    await asyncio.sleep(0.5)
    while True:
        try:
            await back.recv(0.3)
        except TimeoutError:
            break
    offsets = [f["offset"] for f in back.received if f.get("type") == "chat_message"]
    assert offsets == list(range(seen["offset"] + 1, seen["offset"] + 1 + len(offsets)))
    await back.close()
    await writer.close()


async def test_a_fights_frames_are_recovered_on_another_instance_after_turn_timeouts(pair):
    """The player leaves a fight on one instance; its turns time out there and the monster acts;
    back on the other instance, `resume` replays what happened, in order, from Redis."""
    a, b = pair[0], pair[1]
    token = await player()
    fighter = await WsClient.open(f"{a.ws}/ws/combat", token)
    state = await fighter.request({"type": "combat_start", "monsters": ["troll"]})
    stream, seen = state["stream"], position(state)
    await fighter.close()
    await asyncio.sleep(2.3)  # two unattended turns time out (the third would end the fight)
    back = await WsClient.open(f"{b.ws}/ws/combat", token)
    reply = await back.request({"type": "resume", "streams": {stream: seen}})
    entry = reply["streams"][stream]
    assert entry["recovered"] is True and entry["missed"] >= 3, reply
    replayed = [f for f in back.received if f.get("stream") == stream]
    assert [f["offset"] for f in replayed] == list(range(seen["offset"] + 1, seen["offset"] + 1 + entry["missed"]))
    assert {f["epoch"] for f in replayed} == {seen["epoch"]}
    assert "combat_timeout" in {f["type"] for f in replayed}
    # Nobody else may read the fight's stream, on either instance.
    other = await WsClient.open(f"{b.ws}/ws/combat", await player())
    refused = await other.request({"type": "resume", "streams": {stream: seen}})
    assert refused["streams"][stream]["recovered"] is False
    assert refused["streams"][stream]["reason"] == "forbidden"
    await other.close()
    await back.close()
