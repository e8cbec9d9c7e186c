"""An instance killed with SIGKILL (no drain at all), measured end to end: its clients reconnect
elsewhere at once; the survivor removes its presence, world positions and registry rows within a
few cleanup intervals (announcing `offline` and `player_left`); its players' combat turns keep
timing out; and the one window of the design: a personal event sent to a user of the dead
instance before the survivor noticed is pushed to nobody, but chat keeps it in history.

Each part is also covered on its own: test_instance_lifecycle.py (registry, reconnect),
test_world_instance_death.py (positions), test_combat_failover.py (timers exactly once).
This module starts its own cluster: the shared one's instances would race to clean up.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.models import CombatLogEntry, Connection, Instance
from tests.support.cluster import FAST_ENV, Cluster, WsClient
from tests.support.db import db
from tests.support.faults import until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cluster2(django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env={"COMBAT_TURN_TIMEOUT": "1"}).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_sigkill_of_an_instance_measured(cluster2, unique):
    a, b = cluster2[0], cluster2[1]
    alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
    dave_id, dave = await asyncio.to_thread(b.register, unique("dave"))
    status, guild = await asyncio.to_thread(
        a.request, "POST", "/api/v1/guilds/", {"name": unique("G"), "open": True}, alice
    )
    for token in (bob, dave):
        await asyncio.to_thread(b.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, token)
    alice_game = await WsClient.open(f"{a.ws}/ws/game", alice)
    alice_chat = await WsClient.open(f"{a.ws}/ws/chat", alice)
    watcher = await WsClient.open(f"{a.ws}/ws/world")
    await watcher.request({"type": "zone_change", "zone": "starter_town", "x": 520, "y": 520})
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    bob_combat = await WsClient.open(f"{b.ws}/ws/combat", bob)
    dave_world = await WsClient.open(f"{b.ws}/ws/world", dave)
    dave_chat_on_b = await WsClient.open(f"{b.ws}/ws/chat", dave)
    await dave_world.request({"type": "zone_change", "zone": "starter_town"})
    await watcher.recv_type("player_entered", user_id=dave_id, timeout=10)
    fight = await bob_combat.request({"type": "combat_start", "monsters": ["wolf"]})
    session_id = fight["combat_session_id"]
    await alice_game.recv_type("player_status", user_id=dave_id, status="online", timeout=10)
    rows_of_b = db(Connection.objects.filter(instance_id=b.instance_id).count)

    async def all_four_recorded() -> bool:  # the registry is written in batches
        return await rows_of_b() == 4

    await until(all_four_recorded, timeout=15, every=0.1, what="b's four registry rows")

    b.kill()
    killed = time.monotonic()
    timeouts_at_kill = await db(CombatLogEntry.objects.filter(session_id=session_id, kind="timeout").count)()
    # Bob's client notices at once (the socket is reset) and reconnects to the survivor.
    closed = await bob_game.closed_with(5)
    assert closed is None  # no close frame: the process died
    back = await WsClient.open(f"{a.ws}/ws/game", bob)
    reconnected = time.monotonic() - killed
    # A private message to Dave before the survivor noticed: presence still says he is on B.
    sent = await alice_chat.request({"type": "chat_message", "channel": "private", "to": dave_id, "content": "gap"})
    assert sent["type"] == "ack"
    del dave_chat_on_b  # its socket died with instance B

    offline = await alice_game.recv_type("player_status", user_id=dave_id, timeout=15)
    assert offline["status"] == "offline"
    offline_after = time.monotonic() - killed
    left = await watcher.recv_type("player_left", user_id=dave_id, timeout=15)
    assert left["zone"] == "starter_town"
    left_after = time.monotonic() - killed

    async def rows_gone() -> bool:
        rows = await db(Connection.objects.filter(instance_id=b.instance_id).count)()
        return rows == 0 and not await db(Instance.objects.filter(id=b.instance_id).exists)()

    deadline = time.monotonic() + 15
    while not await rows_gone():
        assert time.monotonic() < deadline, "the dead instance's registry rows stayed"
        await asyncio.sleep(0.1)
    registry_after = time.monotonic() - killed
    # Bob reconnected before the cleanup, so he was never announced offline.
    assert not [f for f in alice_game.received if f.get("user_id") == bob_id and f.get("status") == "offline"]
    # Bob's fight goes on without his instance: the survivor times his turns out.
    deadline = time.monotonic() + 15
    while await db(CombatLogEntry.objects.filter(session_id=session_id, kind="timeout").count)() <= timeouts_at_kill:
        assert time.monotonic() < deadline, "no turn timed out after the kill"
        await asyncio.sleep(0.2)
    timer_after = time.monotonic() - killed
    back_combat = await WsClient.open(f"{a.ws}/ws/combat", bob)
    state = await back_combat.recv_type("combat_state", timeout=10)
    assert state["combat_session_id"] == session_id

    # Dave comes back: the message of the gap is not pushed (it went "live" to a dead socket)
    # but it is in his history; one sent after the cleanup is delivered as an offline event.
    await alice_chat.request({"type": "chat_message", "channel": "private", "to": dave_id, "content": "kept"})
    dave_chat = await WsClient.open(f"{a.ws}/ws/chat", dave)
    pushed = await dave_chat.recv(5)
    assert (pushed["type"], pushed["content"]) == ("chat_message", "kept")
    history = await dave_chat.request({"type": "history_request", "channel": "private", "with": alice_id})
    assert [m["content"] for m in history["messages"]] == ["gap", "kept"]
    print(
        f"FIGURE sigkill reconnect_elsewhere={reconnected:.2f} offline_announced={offline_after:.2f}"
        f" player_left={left_after:.2f} registry_rows_gone={registry_after:.2f} combat_timer_fired={timer_after:.2f}"
        f" cleanup_interval={FAST_ENV['WEBSOCKET_CLEANUP_INTERVAL']}"
    )
    for client in (alice_game, alice_chat, watcher, back, back_combat, dave_chat):
        await client.close()
