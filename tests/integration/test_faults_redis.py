"""Redis failing under two real instances: stopped (the process terminated, then started again
EMPTY on the same port) and frozen (SIGSTOP). Nothing dies, connections stay open, local
delivery goes on, nothing blocks for long, and everything the instances keep in Redis is
re-established by itself once it answers again. Stored data (database) is untouched.

This module starts its own cluster: Redis is stopped here, which the shared one must not see.
Lines starting with FIGURE are the measurements quoted in docs/reliability.md (run with -s).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.models import ChatMessage, CombatSession
from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.faults import PASSWORD, health, presence_of, until, until_health

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 5.0
ENV = {"COMBAT_TURN_TIMEOUT": "120"}  # the fight waits for its player through the outage


@pytest.fixture(scope="module")
def faulty(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env=ENV).start()
    try:
        yield cluster
    finally:
        if cluster.redis.process is not None:
            cluster.redis.resume()
        cluster.stop()


def figure(name: str, **values: float | str) -> None:
    print("FIGURE", name, " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


async def chat_until_received(sender: WsClient, receiver: WsClient, text: str, timeout: float = 30.0) -> float:
    """Send global chat from `sender` until `receiver` gets one; seconds it took."""
    started = time.monotonic()
    for n in range(int(timeout / 0.5)):
        await sender.request({"type": "chat_message", "channel": "global", "content": f"{text} {n}"}, timeout=10)
        try:
            await receiver.recv_type("chat_message", timeout=0.5)
            return time.monotonic() - started
        except TimeoutError:
            continue
    raise AssertionError(f"{text}: no cross-instance delivery within {timeout}s")


async def frame_of(client: WsClient, frame_type: str, timeout: float = 10.0, **match: object) -> dict:
    """A frame already received (recv_type skips others) or the next one that matches."""
    for frame in client.received:
        if frame.get("type") == frame_type and all(frame.get(k) == v for k, v in match.items()):
            return frame
    return await client.recv_type(frame_type, timeout=timeout, **match)


def outage_lines(server) -> tuple[int, int]:
    """How often the log said Redis went away, and came back."""
    log = server.log_text()
    return log.count("redis unavailable"), log.count("redis available again")


async def pings(*clients: WsClient) -> None:
    for client in clients:
        assert (await client.request({"type": "ping"}, timeout=10))["type"] == "pong"


async def test_redis_stopped_then_restarted_empty(faulty, unique):
    a, b = faulty[0], faulty[1]
    alice_name = unique("alice")
    alice_id, alice = await asyncio.to_thread(a.register, alice_name)
    carol_id, carol = await asyncio.to_thread(a.register, unique("carol"))
    bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
    dave_id, dave = await asyncio.to_thread(b.register, unique("dave"))
    eve_id, eve = await asyncio.to_thread(a.register, unique("eve"))
    frank_id, frank = await asyncio.to_thread(a.register, unique("frank"))
    status, guild = await asyncio.to_thread(
        a.request, "POST", "/api/v1/guilds/", {"name": unique("G"), "open": True}, alice
    )
    assert status == 201
    await asyncio.to_thread(b.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, bob)

    alice_chat = await WsClient.open(f"{a.ws}/ws/chat", alice)
    carol_chat = await WsClient.open(f"{a.ws}/ws/chat", carol)
    bob_chat = await WsClient.open(f"{b.ws}/ws/chat", bob)
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    dave_world = await WsClient.open(f"{b.ws}/ws/world", dave)
    await dave_world.request({"type": "zone_change", "zone": "starter_town"})
    watcher = await WsClient.open(f"{a.ws}/ws/world")
    await watcher.request({"type": "zone_change", "zone": "starter_town", "x": 520, "y": 520})
    frank_combat = await WsClient.open(f"{a.ws}/ws/combat", frank)
    fight = await frank_combat.request({"type": "combat_start", "monsters": ["goblin"]})
    session_id = fight["combat_session_id"]
    everyone = [alice_chat, carol_chat, bob_chat, bob_game, dave_world, watcher, frank_combat]

    await alice_chat.request({"type": "chat_message", "channel": "global", "content": "before the outage"})
    stored = await alice_chat.request({"type": "chat_message", "channel": "private", "to": eve_id, "content": "kept"})
    assert stored["type"] == "ack"
    assert (await watcher.request({"type": "nearby_players_request"}))["players"][0]["user_id"] == dave_id

    logged = [
        (server.log_text().count("redis unavailable"), server.log_text().count("redis available")) for server in (a, b)
    ]
    faulty.redis.stop()
    stopped = time.monotonic()
    to_503 = max(await until_health(a, 503), await until_health(b, 503))
    # Connections stay open and answer; handlers that need no Redis work as usual.
    await pings(*everyone)
    state = await frank_combat.request({"type": "combat_state_request", "combat_session_id": session_id})
    assert state["type"] == "combat_state" and state["status"] == "active"
    # Local delivery: a message on A reaches A's connections; the sender is not kept waiting.
    sent = time.monotonic()
    ack = await alice_chat.request({"type": "chat_message", "channel": "global", "content": "during"}, timeout=10)
    ack_seconds = time.monotonic() - sent
    assert ack["type"] == "ack"
    assert (await carol_chat.recv_type("chat_message", content="during"))["user_id"] == alice_id
    # A private message to a user on the same instance arrives live; to one on the other
    # instance it is kept (presence cannot be read) and handed over after the outage.
    await alice_chat.request({"type": "chat_message", "channel": "private", "to": carol_id, "content": "psst"})
    assert (await carol_chat.recv_type("chat_message", content="psst"))["channel"] == "private"
    await alice_chat.request({"type": "chat_message", "channel": "private", "to": bob_id, "content": "for bob"})
    # Logging in works: the token route's throttle counts locally while its shared cache is down.
    status, tokens = await asyncio.to_thread(
        a.request, "POST", "/api/v1/auth/token/", {"username": alice_name, "password": PASSWORD}
    )
    assert status == 200 and tokens["access"]
    # Moving needs the shared positions: refused cleanly, nothing else happens.
    refused = await dave_world.request({"type": "player_movement", "zone": "starter_town", "x": 505, "y": 500})
    assert refused["type"] == "error" and refused["code"] == "unavailable"
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    assert a.alive() and b.alive()

    faulty.redis.start()  # same port, empty: no persistence
    restarted = time.monotonic()
    outage = restarted - stopped
    to_200 = max(await until_health(a, 200), await until_health(b, 200))
    cross = await chat_until_received(alice_chat, bob_chat, "after")
    # Presence and positions come back by themselves; what was kept arrives.
    await until(lambda: asyncio.to_thread(presence_of, faulty.redis.port, alice_id), what="alice's presence")
    presence_back = time.monotonic() - restarted
    kept = await frame_of(bob_chat, "chat_message", content="for bob")
    assert kept["user_id"] == alice_id and kept["channel"] == "private"
    kept_back = time.monotonic() - restarted

    async def dave_seen():
        near = await watcher.request({"type": "nearby_players_request"})
        return [p for p in near["players"] if p["user_id"] == dave_id]

    await until(dave_seen, what="dave's position")
    position_back = time.monotonic() - restarted
    moved = await dave_world.request({"type": "player_movement", "zone": "starter_town", "x": 505, "y": 500})
    assert moved["type"] == "ack"
    await pings(*everyone)
    assert len(await asyncio.to_thread(presence_of, faulty.redis.port, bob_id)) == 2

    # The database kept everything: history, the fight, the pending private message.
    contents = set(await db(lambda: list(ChatMessage.objects.values_list("content", flat=True)))())
    assert {"before the outage", "during", "psst", "for bob"} <= contents
    history = await bob_chat.request({"type": "history_request", "channel": "global", "limit": 100})
    assert {"before the outage", "during"} <= {m["content"] for m in history["messages"]}
    assert await db(CombatSession.objects.filter(pk=session_id, status="active").exists)()
    # Each instance logged the outage once and its end once, not once per failure. The end is
    # the watchdog's to declare (once a second); an instance whose features came back on their
    # own may not have declared it yet.
    for server, (down, up) in zip((a, b), logged, strict=True):

        async def declared(server=server, up=up):
            return outage_lines(server)[1] > up

        await until(declared, timeout=5, what=f"the end of the outage logged by {server.name}")
        assert outage_lines(server) == (down + 1, up + 1), server.log_tail()
        assert "Traceback" not in server.log_text(), server.log_tail()
    eve_chat = await WsClient.open(f"{b.ws}/ws/chat", eve)
    assert (await eve_chat.recv())["content"] == "kept"
    assert a.alive() and b.alive()
    figure(
        "redis_stop",
        outage=outage,
        health_503_after=to_503,
        chat_ack_during=ack_seconds,
        health_200_after_restart=to_200,
        cross_instance_after_restart=cross,
        presence_after_restart=presence_back,
        kept_private_delivered_after_restart=kept_back,
        position_after_restart=position_back,
    )
    for client in [*everyone, eve_chat]:
        await client.close()


async def test_redis_frozen_blocks_nothing_for_long_and_duplicates_nothing(faulty, unique):
    a, b = faulty[0], faulty[1]
    _, alice = await asyncio.to_thread(a.register, unique("alice"))
    _, carol = await asyncio.to_thread(a.register, unique("carol"))
    _, bob = await asyncio.to_thread(b.register, unique("bob"))
    alice_chat = await WsClient.open(f"{a.ws}/ws/chat", alice)
    carol_chat = await WsClient.open(f"{a.ws}/ws/chat", carol)
    bob_chat = await WsClient.open(f"{b.ws}/ws/chat", bob)
    anonymous = await WsClient.open(f"{b.ws}/ws/game")

    await asyncio.sleep(0.5)  # let the watchdog's probe finish, so the chat PUBLISH is the one that hangs
    faulty.redis.pause()
    try:
        frozen = time.monotonic()
        # The PUBLISH hangs: it is given up after LAYER_SEND_TIMEOUT and delivered locally.
        ack = await alice_chat.request({"type": "chat_message", "channel": "global", "content": "frozen"}, timeout=15)
        ack_seconds = time.monotonic() - frozen
        assert ack["type"] == "ack"
        assert (await carol_chat.recv_type("chat_message", content="frozen"))["channel"] == "global"
        started = time.monotonic()
        status, body = await asyncio.to_thread(health, a)
        assert status == 503 and body["checks"]["channel_layer"]["error"] == "timeout"
        health_seconds = time.monotonic() - started
        await pings(alice_chat, carol_chat, bob_chat, anonymous)
        # Later broadcasts do not queue behind the hung one for longer than their own bound.
        sent = time.monotonic()
        await alice_chat.request({"type": "chat_message", "channel": "global", "content": "frozen 2"}, timeout=15)
        second_ack_seconds = time.monotonic() - sent
        await carol_chat.recv_type("chat_message", content="frozen 2")
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - frozen)))
    finally:
        faulty.redis.resume()
    resumed = time.monotonic()
    to_200 = max(await until_health(a, 200), await until_health(b, 200))
    cross = await chat_until_received(alice_chat, bob_chat, "thawed")
    # A hung PUBLISH runs when Redis resumes: its copy is dropped on A, where the message was
    # already delivered, so Carol saw each message exactly once (B's members get it late).
    await asyncio.sleep(1.0)
    await pings(carol_chat)
    contents = [f["content"] for f in carol_chat.received if f["type"] == "chat_message"]
    assert contents.count("frozen") == 1 and contents.count("frozen 2") == 1, contents
    late = [f for f in bob_chat.received if f["type"] == "chat_message" and f["content"].startswith("frozen")]
    newcomer = await WsClient.open(f"{b.ws}/ws/chat", bob)
    await pings(newcomer, alice_chat, carol_chat, bob_chat, anonymous)
    assert a.alive() and b.alive()
    figure(
        "redis_freeze",
        health_503_in=health_seconds,
        chat_ack_during=ack_seconds,
        second_chat_ack_during=second_ack_seconds,
        health_200_after_resume=to_200,
        cross_instance_after_resume=cross,
        recovered=time.monotonic() - resumed,
        late_copies_on_other_instance=str(len(late)),
    )
    for client in (alice_chat, carol_chat, bob_chat, anonymous, newcomer):
        await client.close()


async def test_presence_of_a_connection_closed_while_redis_hung_is_reconciled(faulty, unique):
    """A connection that closes while Redis does not answer leaves its presence entry behind;
    the instance removes it once Redis answers and announces the user offline."""
    a, b = faulty[0], faulty[1]
    alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
    status, party = await asyncio.to_thread(
        a.request, "POST", "/api/v1/parties/", {"name": unique("P"), "open": True}, alice
    )
    await asyncio.to_thread(b.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, bob)
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    alice_game = await WsClient.open(f"{a.ws}/ws/game", alice)
    await bob_game.recv_type("player_status", user_id=alice_id, status="online")
    assert len(await asyncio.to_thread(presence_of, faulty.redis.port, alice_id)) == 1

    faulty.redis.pause()
    try:
        await alice_game.close()
        # The close's presence update waits for the shared state's socket timeout (5 s), fails.
        await asyncio.sleep(6.5)
    finally:
        faulty.redis.resume()
    resumed = time.monotonic()
    offline = await bob_game.recv_type("player_status", timeout=15, user_id=alice_id)
    assert offline["status"] == "offline"
    reconciled = time.monotonic() - resumed
    assert await asyncio.to_thread(presence_of, faulty.redis.port, alice_id) == {}
    assert await bob_game.nothing_of("player_status", 1.0)  # announced once
    figure("presence_reconciled", after_resume=reconciled)
    await bob_game.close()
