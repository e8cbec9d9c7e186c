"""/ws/combat on the in-process layer (docs/protocol.md §6): sessions, turns, errors, timers, reconnects."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import pytest
from django.test import Client as HttpClient
from django.utils import timezone

from accounts.models import Party
from realtime.features.combat import engine, frames, referee
from realtime.features.combat import service as combat
from realtime.models import CombatLogEntry, CombatParticipant, CombatSession
from realtime.protocol.catalogue import PLAYER_DEFAULT
from tests.support.communicator import STREAM_KEYS, connect, unpositioned
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

STATE_KEYS = {"type", "combat_session_id", "status", "round", "turn", "participants", "timestamp"}
PARTICIPANT_KEYS = {"id", "kind", "name", "hp", "max_hp", "alive"}


async def player(**fields):
    user = await db(make_user)(**fields)
    return user, await connect("/ws/combat", access_token(user))


async def party_of(count):
    party = await db(Party.objects.create)(name="band")
    return [await player(party=party) for _ in range(count)], party


async def start(client, monsters=("goblin",), **fields):
    reply = await client.request({"type": "combat_start", "monsters": list(monsters), **fields})
    assert reply["type"] == "combat_state", reply
    return reply


async def until_turn(client, actor, state=None):
    """Read combat_state frames until it is `actor`'s turn or the fight is over (unless `state`,
    the last one seen, already says so)."""
    if state is not None and (state["turn"]["actor"] == actor or state["status"] != "active"):
        return state
    while True:
        state = await client.recv_type("combat_state")
        if state["turn"]["actor"] == actor or state["status"] != "active":
            return state


async def from_both(frame, first, second):
    """Send `frame` on two connections at the same moment; the sorted outcomes (type or error code)."""
    await asyncio.gather(first.send({**frame, "id": 1}), second.send({**frame, "id": 2}))
    outcomes = []
    for client, frame_id in ((first, 1), (second, 2)):
        while (got := await client.recv()).get("id") != frame_id:
            pass
        outcomes.append(got.get("code", got["type"]))
    return sorted(outcomes)


def living_monster(state):
    return next(p["id"] for p in state["participants"] if p["kind"] == "monster" and p["alive"])


def action(session_id, move, target=None, **fields):
    return {"type": "combat_action", "combat_session_id": session_id, "action": move, "target": target, **fields}


def seed_for(predicate):
    return next(seed for seed in range(1000) if predicate(seed))


def fixed_seed(monkeypatch, seed):
    monkeypatch.setattr(combat, "new_seed", lambda: seed)


async def log_of(session_id, kind=None):
    rows = CombatLogEntry.objects.filter(session_id=session_id).order_by("id")
    if kind:
        rows = rows.filter(kind=kind)
    return await db(lambda: [r.event for r in rows])()


async def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- starting -----------------------------------------------------------------------------------


async def test_start_replies_with_combat_state_in_protocol_shape():
    user, client = await player()
    state = await start(client, ["troll"])  # slower than players: the player's turn comes first
    assert set(state) == STATE_KEYS | STREAM_KEYS | {"id"}
    # The fight's frames are its stream, from offset 1 (docs/protocol.md §12).
    assert state["stream"] == f"combat:{state['combat_session_id']}" and state["offset"] == 1
    assert state["status"] == "active" and state["round"] == 1
    assert set(state["turn"]) == {"actor", "deadline"} and state["turn"]["actor"] == str(user.pk)
    deadline = datetime.fromisoformat(state["turn"]["deadline"].replace("Z", "+00:00"))
    assert timedelta(seconds=25) < deadline - timezone.now() <= timedelta(seconds=30)
    assert state["timestamp"].endswith("Z")
    me, troll = state["participants"]
    assert all(set(p) == PARTICIPANT_KEYS for p in state["participants"])
    assert me == {"id": str(user.pk), "kind": "player", "name": user.username, "hp": 30, "max_hp": 30, "alive": True}
    assert troll == {"id": "troll-1", "kind": "monster", "name": "Troll", "hp": 40, "max_hp": 40, "alive": True}
    joined = unpositioned(await client.recv_type("combat_participant"))
    assert joined == {
        "type": "combat_participant",
        "combat_session_id": state["combat_session_id"],
        "user_id": str(user.pk),
        "event": "joined",
        "timestamp": joined["timestamp"],
    }
    await client.close()


async def test_faster_monsters_act_right_after_the_start():
    user, client = await player()
    state = await start(client, ["wolf"])
    assert state["turn"] == {"actor": "wolf-1", "deadline": None}
    bite = await client.recv_type("combat_action_result")
    assert {k: bite[k] for k in ("actor", "action", "target")} == {
        "actor": "wolf-1",
        "action": "attack",
        "target": str(user.pk),
    }
    assert bite["target_hp"] == 30 - bite["damage"]
    after = await client.recv_type("combat_state")
    assert after["turn"]["actor"] == str(user.pk) and after["turn"]["deadline"]
    assert after["participants"][1]["hp"] == bite["target_hp"]
    await client.close()


async def test_unknown_monster_is_not_found():
    _, client = await player()
    reply = await client.request({"type": "combat_start", "monsters": ["goblin", "unicorn"]})
    assert reply["code"] == "not_found" and reply["details"] == {"monster": "unicorn"}
    assert not await db(CombatSession.objects.exists)()
    await client.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "combat_start"},
        {"type": "combat_start", "monsters": []},
        {"type": "combat_start", "monsters": ["goblin"] * 7},
        {"type": "combat_start", "monsters": "goblin"},
        {"type": "combat_start", "monsters": [3]},
        {"type": "combat_start", "monsters": ["goblin"], "with_party": "yes"},
    ],
)
async def test_malformed_start_is_invalid_message(frame):
    _, client = await player()
    reply = await client.request(frame)
    assert reply["type"] == "error" and reply["code"] == "invalid_message"
    await client.close()


async def test_starting_while_in_a_fight_is_invalid_action_naming_it():
    _, client = await player()
    state = await start(client, ["troll"])
    reply = await client.request({"type": "combat_start", "monsters": ["goblin"], "id": "again"})
    assert reply["code"] == "invalid_action"
    assert reply["details"] == {"combat_session_id": state["combat_session_id"]}
    await client.close()


# --- fighting -----------------------------------------------------------------------------------


async def test_solo_fight_to_victory():
    user, client = await player()
    state = await start(client, ["goblin"])
    session_id, me = state["combat_session_id"], str(user.pk)
    state = await until_turn(client, me)
    while state["status"] == "active":
        target = living_monster(state)
        result = await client.request(action(session_id, "attack", target, id=f"hit{state['round']}"))
        assert result["type"] == "combat_action_result" and result["id"] == f"hit{state['round']}"
        assert result["actor"] == me and result["target"] == target and result["damage"] >= 1
        state = await until_turn(client, me)
    assert state["status"] == "victory" and state["turn"] == {"actor": None, "deadline": None}
    end = await client.recv_type("combat_end")
    assert end["outcome"] == "victory" and end["combat_session_id"] == session_id
    assert not await db(CombatParticipant.objects.filter(user=user, active=True).exists)()
    session = await db(CombatSession.objects.get)(pk=session_id)
    assert session.status == "victory" and session.ended_at is not None
    await start(client, ["goblin"])  # free for the next fight
    await client.close()


async def test_fight_to_defeat():
    user, client = await player()
    state = await start(client, ["dragon", "dragon"])
    session_id, me = state["combat_session_id"], str(user.pk)
    state = await until_turn(client, me, state)
    while state["status"] == "active":
        await client.send(action(session_id, "defend"))
        state = await until_turn(client, me)
    assert state["status"] == "defeat"
    assert [p["alive"] for p in state["participants"] if p["kind"] == "player"] == [False]
    assert (await client.recv_type("combat_end"))["outcome"] == "defeat"
    await client.close()


async def test_action_errors():
    user, client = await player()
    state = await start(client, ["goblin", "goblin"])
    session_id = state["combat_session_id"]
    await until_turn(client, str(user.pk))
    _, stranger = await player()
    other_fight = await start(stranger, ["troll"])
    cases = [
        (action("not-a-uuid", "attack", "goblin-1"), "invalid_message"),
        (action("00000000-0000-0000-0000-000000000000", "attack", "goblin-1"), "not_found"),
        (action(other_fight["combat_session_id"], "attack", "troll-1"), "forbidden"),
        (action(session_id, "dance"), "invalid_action"),
        (action(session_id, "attack"), "invalid_action"),
        (action(session_id, "attack", "goblin-9"), "invalid_action"),
        (action(session_id, "attack", str(user.pk)), "invalid_action"),
        (action(session_id, "attack", "goblin-1", round=7), "not_your_turn"),
        ({**action(session_id, "attack", "goblin-1"), "target": 5}, "invalid_message"),
        ({"type": "combat_action", "action": "attack"}, "invalid_message"),
    ]
    for frame, code in cases:
        reply = await client.request(frame)
        assert (reply["type"], reply["code"]) == ("error", code), (frame, reply)
    # None of them changed the fight.
    assert not [e for e in await log_of(session_id, "action") if e["actor"] == str(user.pk)]
    await client.close()
    await stranger.close()


async def test_dead_target_is_invalid_action():
    user, client = await player()
    state = await start(client, ["goblin", "troll"])
    session_id, me = state["combat_session_id"], str(user.pk)
    state = await until_turn(client, me)
    while next(p for p in state["participants"] if p["id"] == "goblin-1")["alive"]:
        await client.send(action(session_id, "attack", "goblin-1"))
        state = await until_turn(client, me)
    reply = await client.request(action(session_id, "attack", "goblin-1"))
    assert reply["code"] == "invalid_action" and reply["details"] == {"target": "goblin-1"}
    await client.close()


async def test_acting_after_the_end_is_invalid_action():
    user, client = await player()
    state = await start(client, ["goblin"])
    session_id, me = state["combat_session_id"], str(user.pk)
    state = await until_turn(client, me)
    while state["status"] == "active":
        await client.send(action(session_id, "attack", "goblin-1"))
        state = await until_turn(client, me)
    reply = await client.request(action(session_id, "attack", "goblin-1"))
    assert reply["code"] == "invalid_action" and reply["details"] == {"status": "victory"}
    await client.close()


# --- parties ------------------------------------------------------------------------------------


async def test_party_start_pulls_in_members_connected_to_combat_only():
    ((alice, a), (bob, b)), party = await party_of(2)
    carol = await db(make_user)(party=party)  # in the party, but not on /ws/combat
    carol_chat = await connect("/ws/chat", access_token(carol))
    state = await start(a, ["troll"], with_party=True)
    ids = [p["id"] for p in state["participants"] if p["kind"] == "player"]
    assert ids == [str(alice.pk), str(bob.pk)]  # same speed: the starter first
    seen = await b.recv_type("combat_state")
    assert "id" not in seen and seen["combat_session_id"] == state["combat_session_id"]
    joined = [(await b.recv_type("combat_participant"))["user_id"] for _ in range(2)]
    assert joined == [str(alice.pk), str(bob.pk)]
    assert not await db(CombatParticipant.objects.filter(user=carol).exists)()
    for client in (a, b, carol_chat):
        await client.close()


async def test_with_party_but_no_party_starts_alone():
    user, client = await player()
    state = await start(client, ["troll"], with_party=True)
    assert [p["id"] for p in state["participants"] if p["kind"] == "player"] == [str(user.pk)]
    await client.close()


async def test_party_turns_alternate_and_out_of_turn_is_refused():
    ((alice, a), (bob, b)), _ = await party_of(2)
    state = await start(a, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    early = await b.request(action(session_id, "attack", "troll-1"))
    assert early["code"] == "not_your_turn" and early["details"]["actor"] == str(alice.pk)
    await a.request(action(session_id, "defend"))
    state = await until_turn(b, str(bob.pk))
    assert state["round"] == 1
    late = await a.request(action(session_id, "defend"))
    assert late["code"] == "not_your_turn"
    result = await b.request(action(session_id, "attack", "troll-1"))
    assert result["type"] == "combat_action_result"
    seen = await a.recv_type("combat_action_result")  # the other player sees it too
    assert seen["actor"] == str(bob.pk) and seen["damage"] == result["damage"]
    troll = await a.recv_type("combat_action_result")
    assert troll["actor"] == "troll-1"
    for client in (a, b):
        await client.close()


async def test_flee_ends_the_fight_for_that_player_only(monkeypatch):
    def alice_flees(seed):
        players = [engine.PlayerEntry("a", "a", PLAYER_DEFAULT), engine.PlayerEntry("b", "b", PLAYER_DEFAULT)]
        state = engine.new_combat(seed=seed, players=players, monsters=["troll"])
        engine.begin(state)
        engine.act(state, actor="a", action="flee")
        return state.fighter("a").fled

    fixed_seed(monkeypatch, seed_for(alice_flees))
    ((alice, a), (bob, b)), _ = await party_of(2)
    state = await start(a, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    result = await a.request(action(session_id, "flee", id="run"))
    assert result["fled"] is True and result["target"] is None and result["damage"] == 0
    left = await b.recv_type("combat_participant")
    while left["event"] == "joined":
        left = await b.recv_type("combat_participant")
    assert (left["user_id"], left["event"]) == (str(alice.pk), "left")
    end = await a.recv_type("combat_end")
    assert end["outcome"] == "fled"
    state = await b.request({"type": "combat_state_request", "combat_session_id": session_id})
    assert state["turn"]["actor"] == str(bob.pk) and state["status"] == "active"
    assert str(alice.pk) not in [p["id"] for p in state["participants"]]
    again = await a.request(action(session_id, "defend"))
    assert again["code"] == "invalid_action"
    looked = await a.request({"type": "combat_state_request", "combat_session_id": session_id})
    assert looked["type"] == "combat_state" and looked["status"] == "active"
    await start(a, ["goblin"])  # she is free to fight elsewhere
    for client in (a, b):
        await client.close()


# --- exactly one action per turn ------------------------------------------------------------------


async def test_same_turn_sent_twice_at_once_applies_once():
    user, first = await player()
    second = await connect("/ws/combat", access_token(user))
    state = await start(first, ["troll"])
    session_id = state["combat_session_id"]
    await second.recv_type("combat_state")  # the second connection joined the fight
    frame = action(session_id, "attack", "troll-1", round=1)
    await asyncio.gather(first.send({**frame, "id": "one"}), second.send({**frame, "id": "two"}))
    replies = []
    for client, frame_id in ((first, "one"), (second, "two")):
        while True:
            got = await client.recv()
            if got.get("id") == frame_id:
                replies.append(got)
                break
    assert sorted(r["type"] for r in replies) == ["combat_action_result", "error"]
    assert next(r for r in replies if r["type"] == "error")["code"] == "not_your_turn"
    attacks = [e for e in await log_of(session_id, "action") if e["actor"] == str(user.pk)]
    assert len(attacks) == 1
    for client in (first, second):
        await client.close()


async def test_party_double_action_without_round_applies_once():
    ((alice, a), (_, b)), _ = await party_of(2)
    a2 = await connect("/ws/combat", access_token(alice))
    state = await start(a, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    await a2.recv_type("combat_state")
    codes = await from_both(action(session_id, "attack", "troll-1"), a, a2)
    assert codes == ["combat_action_result", "not_your_turn"]
    assert len([e for e in await log_of(session_id, "action") if e["actor"] == str(alice.pk)]) == 1
    for client in (a, a2, b):
        await client.close()


async def test_solo_double_action_without_round_applies_once():
    # The troll acts right after the player, so the player's turn comes straight back: without the
    # implied round (of the last combat_state each connection got) the copy would take it too.
    user, first = await player()
    second = await connect("/ws/combat", access_token(user))
    state = await start(first, ["troll"])
    session_id = state["combat_session_id"]
    await second.recv_type("combat_state")
    assert await from_both(action(session_id, "defend"), first, second) == ["combat_action_result", "not_your_turn"]
    assert len([e for e in await log_of(session_id, "action") if e["actor"] == str(user.pk)]) == 1
    # Having seen the next turn's state, either connection acts again without `round`.
    state = await until_turn(second, str(user.pk))
    assert (await second.request(action(session_id, "defend", id=3)))["type"] == "combat_action_result"
    for client in (first, second):
        await client.close()


# --- state requests -------------------------------------------------------------------------------


async def test_state_request():
    user, client = await player()
    _, stranger = await player()
    missing = await client.request({"type": "combat_state_request"})
    assert missing["code"] == "not_found"
    state = await start(client, ["troll"])
    session_id = state["combat_session_id"]
    asked = await client.request({"type": "combat_state_request", "combat_session_id": session_id, "id": "s"})
    assert set(asked) == STATE_KEYS | {"id"} and asked["id"] == "s"
    assert asked["turn"] == state["turn"] and asked["participants"] == state["participants"]
    running = await client.request({"type": "combat_state_request"})
    assert running["combat_session_id"] == session_id
    assert (await stranger.request({"type": "combat_state_request", "combat_session_id": session_id}))[
        "code"
    ] == "forbidden"
    unknown = {"type": "combat_state_request", "combat_session_id": "00000000-0000-0000-0000-000000000001"}
    assert (await client.request(unknown))["code"] == "not_found"
    bad = {"type": "combat_state_request", "combat_session_id": "1234"}
    assert (await client.request(bad))["code"] == "invalid_message"
    await client.close()
    await stranger.close()


# --- timers -------------------------------------------------------------------------------------


async def test_turn_timeout_fires_once_per_turn_and_the_fight_goes_on(settings):
    settings.COMBAT_TURN_TIMEOUT = 0.3
    user, client = await player()
    state = await start(client, ["troll"])
    session_id, me = state["combat_session_id"], str(user.pk)
    for expected_round in (1, 2):
        timeout = unpositioned(await client.recv_type("combat_timeout"))
        assert timeout == {
            "type": "combat_timeout",
            "combat_session_id": session_id,
            "actor": me,
            "timestamp": timeout["timestamp"],
        }
        after = await client.recv_type("combat_state")
        assert after["turn"]["actor"] == "troll-1" and after["round"] == expected_round
        assert (await client.recv_type("combat_action_result"))["actor"] == "troll-1"
        mine = await client.recv_type("combat_state")
        assert mine["turn"]["actor"] == me and mine["round"] == expected_round + 1
    await client.close()
    timeouts = await log_of(session_id, "timeout")
    assert [t["round"] for t in timeouts[:2]] == [1, 2]
    assert len({t["turn"] for t in timeouts}) == len(timeouts)


async def test_late_action_is_refused_and_the_turn_times_out_once():
    user, client = await player()
    state = await start(client, ["troll"])
    session_id = state["combat_session_id"]
    await db(CombatSession.objects.filter(pk=session_id).update)(deadline=timezone.now() - timedelta(seconds=1))
    # Pinned to round 1: whether this action or the sweep gets there first, it cannot land on round 2.
    await client.send(action(session_id, "attack", "troll-1", round=1, id="late"))
    seen = []
    while not seen or seen[-1].get("id") != "late":
        seen.append(await client.recv())
    assert seen[-1]["code"] == "not_your_turn"
    assert [f["actor"] for f in seen if f["type"] == "combat_timeout"] == [str(user.pk)]
    assert len(await log_of(session_id, "timeout")) == 1
    assert not [e for e in await log_of(session_id, "action") if e["actor"] == str(user.pk)]
    await client.close()


async def test_abandoned_fight_ends_and_the_result_waits_for_the_player(settings):
    settings.COMBAT_TURN_TIMEOUT = 0.15
    user, client = await player()
    state = await start(client, ["goblin"])  # too weak to kill the player in three turns
    session_id = state["combat_session_id"]
    await client.close()

    async def ended():
        return await db(CombatSession.objects.filter(pk=session_id).exclude(status="active").exists)()

    await wait_for(ended)
    session = await db(CombatSession.objects.get)(pk=session_id)
    assert session.status == "fled"
    assert [e["kind"] for e in await log_of(session_id)].count("timeout") == referee.ABANDON_AFTER_TIMEOUTS
    back = await connect("/ws/combat", access_token(user))
    end = await back.recv()  # kept for the player while away (offline delivery)
    assert (end["type"], end["outcome"], end["combat_session_id"]) == ("combat_end", "fled", session_id)
    assert await back.nothing(0.3)  # no fight to resume: no combat_state
    await back.close()


# --- connections coming and going -------------------------------------------------------------------


async def test_reconnect_gets_state_at_once_and_others_hear_about_it():
    ((alice, a), (bob, b)), _ = await party_of(2)
    state = await start(a, ["troll"], with_party=True)
    session_id = state["combat_session_id"]
    await b.recv_type("combat_state")
    await b.close()
    gone = await a.recv_type("combat_participant")
    while gone["event"] == "joined":
        gone = await a.recv_type("combat_participant")
    assert (gone["user_id"], gone["event"]) == (str(bob.pk), "disconnected")
    back = await connect("/ws/combat", access_token(bob))
    first = await back.recv()  # right after connection_established
    assert first["type"] == "combat_state" and first["combat_session_id"] == session_id
    assert first["turn"]["actor"] == str(alice.pk) and set(first) == STATE_KEYS
    came_back = await a.recv_type("combat_participant")
    while came_back["event"] == "joined":  # the opening `joined` frames may still be on their way
        came_back = await a.recv_type("combat_participant")
    assert (came_back["user_id"], came_back["event"]) == (str(bob.pk), "reconnected")
    # The reconnected connection follows the fight again.
    await a.request(action(session_id, "defend"))
    assert (await back.recv_type("combat_action_result"))["actor"] == str(alice.pk)
    await a.close()
    await back.close()


async def test_a_second_connection_is_not_a_reconnect():
    ((alice, a), (_, b)), _ = await party_of(2)
    await start(a, ["troll"], with_party=True)
    await b.recv_type("combat_state")
    for _ in range(2):
        await b.recv_type("combat_participant")
    extra = await connect("/ws/combat", access_token(alice))
    assert (await extra.recv())["type"] == "combat_state"
    assert await b.nothing(0.3)
    for client in (a, b, extra):
        await client.close()


# --- the admin ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:No directory at")  # whitenoise: no collectstatic in tests
async def test_admin_shows_the_session_and_its_log():
    user, client = await player()
    state = await start(client, ["wolf"])
    await client.close()
    staff = await db(make_user)(is_staff=True, is_superuser=True)

    def page(path):
        http = HttpClient()
        http.force_login(staff)
        response = http.get(path)
        return response.status_code, response.content.decode()

    status, html = await db(page)(f"/admin/realtime/combatsession/{state['combat_session_id']}/change/")
    assert status == 200
    assert "wolf-1" in html and "attack" in html and user.username in html
    status, html = await db(page)("/admin/realtime/combatsession/")
    assert status == 200 and state["combat_session_id"] in html
    status, _ = await db(page)("/admin/realtime/playercombatstats/")
    assert status == 200


def test_frames_are_json_serialisable():
    frame = frames.state_frame("s", {"status": "active", "round": 1, "actor": None, "participants": []}, timezone.now())
    assert json.loads(json.dumps(frame))["turn"] == {"actor": None, "deadline": None}
