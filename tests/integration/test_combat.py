"""/ws/combat across two real instances sharing Redis and the database: fights followed from both,
actions racing on both instances, turn timeouts, reconnects on the other instance."""

from __future__ import annotations

import asyncio
import os

import pytest

from realtime.models import CombatLogEntry, CombatSession
from tests.support.cluster import WsClient
from tests.support.db import db

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TURN_TIMEOUT = 5.0  # seconds: room for a loaded machine to answer, short enough to wait out


@pytest.fixture(scope="module", autouse=True)
def short_turns():
    """The shared cluster's servers inherit this process's environment; shorten their turns."""
    previous = os.environ.get("COMBAT_TURN_TIMEOUT")
    os.environ["COMBAT_TURN_TIMEOUT"] = str(TURN_TIMEOUT)
    yield
    if previous is None:
        os.environ.pop("COMBAT_TURN_TIMEOUT", None)
    else:
        os.environ["COMBAT_TURN_TIMEOUT"] = previous


async def register(server, name):
    return await asyncio.to_thread(server.register, name)


async def form_party(server, leader_token, *member_tokens):
    status, party = await asyncio.to_thread(
        server.request, "POST", "/api/v1/parties/", {"name": "band", "open": True}, leader_token
    )
    assert status == 201, party
    for token in member_tokens:
        status, body = await asyncio.to_thread(
            server.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, token
        )
        assert status == 200, body
    return party["id"]


async def open_combat(server, token):
    return await WsClient.open(f"{server.ws}/ws/combat", token)


async def start(client, monsters, **fields):
    reply = await client.request({"type": "combat_start", "monsters": monsters, **fields}, timeout=10)
    assert reply["type"] == "combat_state", reply
    return reply


async def until_turn(client, actor, *, round=1, timeout=10.0):
    """The first combat_state (in arrival order, including frames `request` read past) that gives
    `actor` a turn in `round` or later, or that ends the fight."""
    cursor = getattr(client, "cursor", 0)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        while cursor >= len(client.received):
            await client.recv(max(0.01, deadline - asyncio.get_running_loop().time()))
        frame = client.received[cursor]
        cursor += 1
        client.cursor = cursor
        if frame.get("type") != "combat_state":
            continue
        if frame["status"] != "active" or (frame["turn"]["actor"] == actor and frame["round"] >= round):
            return frame


async def from_both(frame, first, second, tag=""):
    """Send `frame` through two connections at the same moment; their replies."""
    return await asyncio.gather(
        first.request({**frame, "id": f"a{tag}"}, timeout=10), second.request({**frame, "id": f"b{tag}"}, timeout=10)
    )


def outcomes(replies):
    return sorted(r.get("code", r["type"]) for r in replies)


async def solo_on_both(cluster, name):
    """One player with a /ws/combat connection on each instance, in a fight with a troll (slower
    than the player: each round starts with the player's turn)."""
    a, b = cluster[0], cluster[1]
    user_id, token = await register(a, name)
    on_a, on_b = await open_combat(a, token), await open_combat(b, token)
    state = await start(on_a, ["troll"])
    await on_b.recv_type("combat_state")
    return user_id, state["combat_session_id"], on_a, on_b


def living_monster(state):
    return next(p["id"] for p in state["participants"] if p["kind"] == "monster" and p["alive"])


def act(session_id, move, target=None, **fields):
    return {"type": "combat_action", "combat_session_id": session_id, "action": move, "target": target, **fields}


async def fight(client, me, session_id):
    """Attack on every turn of `me` until the fight ends; returns the final state."""
    state = await until_turn(client, me)
    while state["status"] == "active":
        result = await client.request(act(session_id, "attack", living_monster(state)), timeout=10)
        assert result["type"] == "combat_action_result", result
        state = await until_turn(client, me, round=state["round"] + 1)
    return state


async def log(session_id, kind):
    return await db(lambda: list(CombatLogEntry.objects.filter(session_id=session_id, kind=kind).order_by("id")))()


def seen(client, frame_type):
    return [f for f in client.received if f.get("type") == frame_type]


async def test_solo_fight_to_the_end_followed_on_both_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    user_id, token = await register(a, unique("solo"))
    on_a, on_b = await open_combat(a, token), await open_combat(b, token)
    state = await start(on_a, ["goblin", "goblin"])
    session_id = state["combat_session_id"]
    assert (await on_b.recv_type("combat_state"))["combat_session_id"] == session_id
    final = await fight(on_b, user_id, session_id)  # played from the other instance
    assert final["status"] == "victory"
    for client in (on_a, on_b):
        assert (await client.recv_type("combat_end", timeout=10))["outcome"] == "victory"
    # Both connections saw the same fight, in the same order.
    results = [[(f["actor"], f["target"], f["damage"]) for f in seen(c, "combat_action_result")] for c in (on_a, on_b)]
    assert results[0] == results[1] and len(results[0]) >= 2
    session = await db(CombatSession.objects.get)(pk=session_id)
    assert session.status == "victory"
    for client in (on_a, on_b):
        await client.close()


async def test_party_fight_to_the_end_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    await form_party(a, alice, bob)
    alice_ws, bob_ws = await open_combat(a, alice), await open_combat(b, bob)
    state = await start(alice_ws, ["goblin", "wolf"], with_party=True)
    session_id = state["combat_session_id"]
    assert [p["id"] for p in state["participants"] if p["kind"] == "player"] == [alice_id, bob_id]
    alice_final, bob_final = await asyncio.gather(
        fight(alice_ws, alice_id, session_id), fight(bob_ws, bob_id, session_id)
    )
    assert alice_final["status"] == bob_final["status"] != "active"
    assert alice_final["participants"] == bob_final["participants"]
    ends = [await c.recv_type("combat_end", timeout=10) for c in (alice_ws, bob_ws)]
    assert {e["outcome"] for e in ends} == {alice_final["status"]}
    results = [[(f["actor"], f["damage"]) for f in seen(c, "combat_action_result")] for c in (alice_ws, bob_ws)]
    assert results[0] == results[1]
    assert {actor for actor, _ in results[0]} >= {alice_id, bob_id}
    for client in (alice_ws, bob_ws):
        await client.close()


async def test_same_action_sent_to_both_instances_at_once_applies_once(cluster, unique):
    user_id, session_id, on_a, on_b = await solo_on_both(cluster, unique("twin"))
    for round_number in (1, 2, 3):
        replies = await from_both(act(session_id, "defend", round=round_number), on_a, on_b, round_number)
        assert outcomes(replies) == ["combat_action_result", "not_your_turn"], replies
        await until_turn(on_a, user_id, round=round_number + 1)
        await until_turn(on_b, user_id, round=round_number + 1)
    mine = [e for e in await log(session_id, "action") if e.actor == user_id]
    assert [e.round for e in mine] == [1, 2, 3]
    for client in (on_a, on_b):
        await client.close()


async def test_out_of_turn_and_double_actions_in_a_party(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    await form_party(a, alice, bob)
    alice_a, alice_b, bob_b = await open_combat(a, alice), await open_combat(b, alice), await open_combat(b, bob)
    state = await start(alice_a, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    await bob_b.recv_type("combat_state")
    await alice_b.recv_type("combat_state")
    early = await bob_b.request(act(session_id, "attack", "troll-1"))
    assert early["code"] == "not_your_turn"
    # Alice's action, once through each instance, at the same moment, with no round pinned.
    replies = await from_both(act(session_id, "attack", "troll-1"), alice_a, alice_b)
    assert outcomes(replies) == ["combat_action_result", "not_your_turn"], replies
    state = await until_turn(bob_b, bob_id)
    assert state["round"] == 1
    troll = next(p for p in state["participants"] if p["id"] == "troll-1")
    applied = next(r for r in replies if r["type"] == "combat_action_result")
    assert troll["hp"] == 40 - applied["damage"]
    assert len([e for e in await log(session_id, "action") if e.actor == alice_id]) == 1
    for client in (alice_a, alice_b, bob_b):
        await client.close()


async def test_solo_double_action_without_round_on_both_instances_applies_once(cluster, unique):
    # The troll acts right after the player, so the player's turn is back at once: the copy that
    # loses the first turn must not take the next one (it answers the round-1 state it was shown).
    user_id, session_id, on_a, on_b = await solo_on_both(cluster, unique("twin"))
    replies = await from_both(act(session_id, "defend"), on_a, on_b)
    assert outcomes(replies) == ["combat_action_result", "not_your_turn"], replies
    await until_turn(on_b, user_id, round=2)
    assert len([e for e in await log(session_id, "action") if e.actor == user_id]) == 1
    for client in (on_a, on_b):
        await client.close()


async def test_last_connections_closing_at_once_on_both_instances_announce_disconnected(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("stay"))
    bob_id, bob = await register(b, unique("gone"))
    await form_party(a, alice, bob)
    alice_a, bob_a, bob_b = await open_combat(a, alice), await open_combat(a, bob), await open_combat(b, bob)
    state = await start(alice_a, ["troll"], with_party=True)
    await bob_a.recv_type("combat_state")
    await bob_b.recv_type("combat_state")
    await asyncio.gather(bob_a.close(), bob_b.close())
    # Well before any turn timeout, which would otherwise be the first to notice.
    left = await alice_a.recv_type("combat_participant", timeout=TURN_TIMEOUT - 1, event="disconnected")
    assert (left["user_id"], left["combat_session_id"]) == (bob_id, state["combat_session_id"])
    assert await alice_a.nothing_of("combat_participant", 1.0)  # once, not once per instance
    await alice_a.close()


async def test_timeout_with_the_player_connected_fires_once_everywhere(cluster, unique):
    a, b = cluster[0], cluster[1]
    user_id, token = await register(a, unique("idle"))
    on_a, on_b = await open_combat(a, token), await open_combat(b, token)
    state = await start(on_a, ["troll"])
    session_id = state["combat_session_id"]
    await on_b.recv_type("combat_state")
    for client in (on_a, on_b):
        timeout = await client.recv_type("combat_timeout", timeout=TURN_TIMEOUT + 10)
        assert (timeout["actor"], timeout["combat_session_id"]) == (user_id, session_id)
        state = await until_turn(client, user_id, round=2)
        assert state["round"] == 2
    # Answer the next turn: no second timeout for round 1 ever shows up.
    await on_a.request(act(session_id, "defend"))
    assert await on_b.nothing_of("combat_timeout", 1.0)
    rounds = [e.round for e in await log(session_id, "timeout")]
    assert rounds == [1]
    for client in (on_a, on_b):
        await client.close()


async def test_timeout_without_the_player_connected(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    await form_party(a, alice, bob)
    alice_ws, bob_ws = await open_combat(a, alice), await open_combat(b, bob)
    state = await start(alice_ws, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    await bob_ws.recv_type("combat_state")
    await alice_ws.close()
    gone = await bob_ws.recv_type("combat_participant", timeout=10, user_id=alice_id, event="disconnected")
    assert gone["combat_session_id"] == session_id
    for round_number in (1, 2):
        timeout = await bob_ws.recv_type("combat_timeout", timeout=TURN_TIMEOUT + 10)
        assert timeout["actor"] == alice_id
        state = await until_turn(bob_ws, bob_id, round=round_number)
        assert state["round"] == round_number
        await bob_ws.request(act(session_id, "defend"))
    await until_turn(bob_ws, alice_id, round=3)
    timeouts = [(e.round, e.actor) for e in await log(session_id, "timeout")]
    assert timeouts == [(1, alice_id), (2, alice_id)]
    await bob_ws.close()


async def test_reconnect_mid_fight_on_the_other_instance(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    await form_party(a, alice, bob)
    alice_ws, bob_ws = await open_combat(a, alice), await open_combat(b, bob)
    state = await start(alice_ws, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    await bob_ws.recv_type("combat_state")
    await alice_ws.request(act(session_id, "defend"))
    await until_turn(bob_ws, bob_id)
    await bob_ws.close()
    await alice_ws.recv_type("combat_participant", timeout=10, user_id=bob_id, event="disconnected")
    moved = await WsClient.open(f"{a.ws}/ws/combat", bob)  # back, on the other instance
    first = await moved.recv()
    assert first["type"] == "combat_state" and first["combat_session_id"] == session_id
    assert first["turn"]["actor"] == bob_id and first["round"] == 1
    await alice_ws.recv_type("combat_participant", timeout=10, user_id=bob_id, event="reconnected")
    result = await moved.request(act(session_id, "attack", "troll-1"))
    assert result["type"] == "combat_action_result"
    assert (await alice_ws.recv_type("combat_action_result", actor=bob_id))["damage"] == result["damage"]
    for client in (alice_ws, moved):
        await client.close()
