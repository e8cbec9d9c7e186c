"""Combat timers survive the death of the instance that armed them (SIGKILL). Each test starts its
own cluster with one-second turns, and this module uses no shared one, so only the survivor can
fire the timeouts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from realtime.models import CombatLogEntry, CombatParticipant, CombatSession
from tests.support.cluster import Cluster, WsClient
from tests.support.db import db

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ENV = {"COMBAT_TURN_TIMEOUT": "1"}


@pytest.fixture
def short_turn_cluster(django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env=ENV).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def timeout_log(session_id):
    """(round, actor) of every stored timeout, in order."""
    rows = CombatLogEntry.objects.filter(session_id=session_id, kind="timeout").order_by("id")
    return await db(lambda: list(rows.values_list("round", "actor")))()


async def test_survivor_fires_each_timeout_once_after_the_players_instance_was_killed(short_turn_cluster, unique):
    doomed, survivor = short_turn_cluster[0], short_turn_cluster[1]
    alice_id, alice = await asyncio.to_thread(doomed.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(survivor.register, unique("bob"))
    status, party = await asyncio.to_thread(
        doomed.request, "POST", "/api/v1/parties/", {"name": "band", "open": True}, alice
    )
    assert status == 201, party
    status, _ = await asyncio.to_thread(survivor.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, bob)
    assert status == 200
    alice_ws = await WsClient.open(f"{doomed.ws}/ws/combat", alice)
    bob_ws = await WsClient.open(f"{survivor.ws}/ws/combat", bob)
    # The goblin is faster: the start (on the doomed instance) resolves its attack and starts
    # Alice's turn there, so that instance armed the precise timer for it.
    state = await alice_ws.request({"type": "combat_start", "monsters": ["goblin"], "with_party": True})
    session_id = state["combat_session_id"]
    await bob_ws.recv_type("combat_state", combat_session_id=session_id)
    doomed.kill()
    # Nobody answers: both players' turns time out, fired by the survivor alone.
    timeouts = []
    while len([t for t in timeouts if t["actor"] == alice_id]) < 3:
        timeouts.append(await bob_ws.recv_type("combat_timeout", timeout=15))
    # The survivor also noticed that Alice's connection went with her instance (once it declared
    # the instance dead: three cleanup intervals, a busy machine may take longer than the fight).
    if not [f for f in bob_ws.received if f["type"] == "combat_participant" and f["event"] == "disconnected"]:
        await bob_ws.recv_type("combat_participant", event="disconnected", user_id=alice_id, timeout=15)
    await bob_ws.close()
    departures = [f for f in bob_ws.received if f["type"] == "combat_participant" and f["event"] == "disconnected"]
    assert [f["user_id"] for f in departures] == [alice_id]
    stored = await timeout_log(session_id)
    assert all(count == 1 for count in Counter(stored).values()), stored  # one per turn
    assert [stored.count((r, alice_id)) for r in (1, 2, 3)] == [1, 1, 1]
    assert stored.count((1, bob_id)) == 1 and stored.count((2, bob_id)) == 1
    # Bob saw exactly the stored timeouts, in order: no frame was sent twice.
    assert [t["actor"] for t in timeouts] == [actor for _, actor in stored[: len(timeouts)]]


async def test_fight_of_a_killed_instance_is_abandoned_and_reported_later(short_turn_cluster, unique):
    doomed, survivor = short_turn_cluster[0], short_turn_cluster[1]
    alice_id, alice = await asyncio.to_thread(doomed.register, unique("alice"))
    alice_ws = await WsClient.open(f"{doomed.ws}/ws/combat", alice)
    state = await alice_ws.request({"type": "combat_start", "monsters": ["goblin"]})
    session_id = state["combat_session_id"]
    doomed.kill()
    deadline = time.monotonic() + 30
    while await db(CombatSession.objects.filter(pk=session_id, status="active").exists)():
        assert time.monotonic() < deadline, "the survivor never timed the fight out"
        await asyncio.sleep(0.2)
    session = await db(CombatSession.objects.get)(pk=session_id)
    assert session.status == "fled"
    stored = await timeout_log(session_id)
    assert stored and all(count == 1 for count in Counter(stored).values()), stored
    assert not await db(CombatParticipant.objects.filter(user_id=alice_id, active=True).exists)()
    # Back on the survivor: the result was kept for her (offline delivery), and no fight resumes.
    back = await WsClient.open(f"{survivor.ws}/ws/combat", alice)
    end = await back.recv()
    assert (end["type"], end["combat_session_id"], end["outcome"]) == ("combat_end", session_id, "fled")
    assert await back.nothing_of("combat_state", 0.5)
    await back.close()
