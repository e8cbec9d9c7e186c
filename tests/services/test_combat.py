"""Combat rules (pure engine) and the referee in the database: compare-and-set, timers, constraint."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from realtime.boot import ensure_runtime
from realtime.features.combat import engine, referee
from realtime.features.combat import service as combat
from realtime.features.combat.engine import CombatState, RuleError
from realtime.models import CombatLogEntry, CombatParticipant, CombatSession, PlayerCombatStats
from realtime.protocol import ProtocolError
from realtime.protocol.catalogue import MONSTERS, PLAYER_DEFAULT, Stats
from tests.support.db import db
from tests.support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def solo(monsters=("goblin",), seed=1, stats=PLAYER_DEFAULT, player="p1"):
    return engine.new_combat(seed=seed, players=[engine.PlayerEntry(player, "alice", stats)], monsters=list(monsters))


def duo(monsters=("goblin",), seed=1):
    players = [engine.PlayerEntry("p1", "alice", PLAYER_DEFAULT), engine.PlayerEntry("p2", "bob", PLAYER_DEFAULT)]
    return engine.new_combat(seed=seed, players=players, monsters=list(monsters))


def first_living_monster(state):
    return next(m.id for m in state.monsters if m.alive)


def seed_where(predicate, tries=500):
    for seed in range(tries):
        if predicate(seed):
            return seed
    raise AssertionError("no seed found")


def flees_first_turn(seed, monsters=("troll",)):
    state = solo(monsters, seed=seed)
    engine.begin(state)
    engine.act(state, actor="p1", action="flee")
    return state.fighter("p1").fled


# --- catalogue and turn order ------------------------------------------------------------------


def test_catalogue_has_the_four_monsters_with_their_stats():
    assert {"goblin", "wolf", "troll", "dragon"} <= set(MONSTERS)
    for kind in MONSTERS.values():
        assert kind.stats.max_hp > 0 and kind.stats.attack > 0 and kind.stats.speed > 0
    assert MONSTERS["dragon"].stats.max_hp > MONSTERS["troll"].stats.max_hp > MONSTERS["goblin"].stats.max_hp


def test_turn_order_is_by_speed_with_players_first_on_ties():
    fast = Stats(max_hp=30, attack=8, defence=3, speed=12)  # ties with the goblin
    players = [engine.PlayerEntry("p1", "a", PLAYER_DEFAULT), engine.PlayerEntry("p2", "b", fast)]
    state = engine.new_combat(seed=1, players=players, monsters=["troll", "goblin", "wolf", "dragon"])
    assert [f.id for f in state.fighters] == ["wolf-1", "p2", "goblin-1", "p1", "dragon-1", "troll-1"]


def test_duplicate_monsters_get_numbered_ids_and_names():
    state = solo(["goblin", "goblin", "wolf"])
    monsters = {m.id: m.name for m in state.monsters}
    assert monsters == {"goblin-1": "Goblin 1", "goblin-2": "Goblin 2", "wolf-1": "Wolf"}


def test_faster_monsters_act_before_the_first_player_turn():
    state = solo(["wolf", "troll"])
    events = engine.begin(state)
    assert [e.kind for e in events] == ["start", "action"]
    assert events[0].view["actor"] == "wolf-1"
    assert events[1].data["actor"] == "wolf-1" and events[1].data["target"] == "p1"
    assert state.actor == "p1" and state.round == 1


def test_each_fighter_acts_once_per_round():
    state = duo(["troll"])
    engine.begin(state)
    actors = []
    for _ in range(4):
        for event in engine.act(state, actor=state.actor, action="defend"):
            if event.kind == "action":
                actors.append((event.data["round"], event.data["actor"]))
    assert actors[:6] == [(1, "p1"), (1, "p2"), (1, "troll-1"), (2, "p1"), (2, "p2"), (2, "troll-1")]


# --- maths -------------------------------------------------------------------------------------


def test_same_seed_and_inputs_give_the_same_fight():
    def fight(seed):
        state = solo(["goblin", "wolf"], seed=seed)
        log = [e.data for e in engine.begin(state)]
        while state.status == "active":
            log += [e.data for e in engine.act(state, actor="p1", action="attack", target=first_living_monster(state))]
        return log

    assert fight(7) == fight(7)
    assert any(fight(7) != fight(seed) for seed in (8, 9, 10))


def test_damage_stays_within_the_formula():
    # Player attack 8 against troll defence 4: 8 × 85–115 % − 4 ÷ 2, and 1.5× on a critical hit.
    plain = range(8 * 85 // 100 - 2, 8 * 115 // 100 - 2 + 1)
    critical = {d * 3 // 2 for d in plain}
    for seed in range(200):
        state = solo(["troll"], seed=seed)
        engine.begin(state)
        event = engine.act(state, actor="p1", action="attack", target="troll-1")[0].data
        assert event["damage"] in (critical if event["critical"] else plain)
        assert event["target_hp"] == 40 - event["damage"]


def test_critical_hits_happen_about_one_in_ten():
    crits = 0
    for seed in range(1000):
        state = solo(["troll"], seed=seed)
        engine.begin(state)
        crits += engine.act(state, actor="p1", action="attack", target="troll-1")[0].data["critical"]
    assert 60 <= crits <= 140


def test_defend_halves_the_next_damage_taken():
    # Same seed and turn number: the troll's draw is identical, only the defence differs.
    for seed in range(50):
        plain, guarded = solo(["troll"], seed=seed), solo(["troll"], seed=seed)
        engine.begin(plain)
        engine.begin(guarded)
        plain_hit = engine.act(plain, actor="p1", action="attack", target="troll-1")[1].data
        guarded_hit = engine.act(guarded, actor="p1", action="defend")[1].data
        assert guarded_hit["actor"] == "troll-1"
        assert guarded_hit["damage"] == (plain_hit["damage"] + 1) // 2
        assert guarded.fighter("p1").defending is False  # used up by the hit


def test_defence_ends_at_the_defenders_next_turn():
    def play(seed, first_move):
        state = duo(["troll"], seed=seed)
        engine.begin(state)
        hits = []
        for move in (first_move, "defend", "attack", "defend"):
            target = "troll-1" if move == "attack" else None
            events = engine.act(state, actor=state.actor, action=move, target=target)
            hits += [e.data for e in events if e.data.get("actor") == "troll-1"]
        return hits

    # The troll hits p2 in round 1 (p1's guard is never used) and p1 in round 2.
    seed = seed_where(lambda s: [h["target"] for h in play(s, "defend")] == ["p2", "p1"])
    guarded_first, plain = play(seed, "defend"), play(seed, "attack")
    assert guarded_first[1]["damage"] == plain[1]["damage"]  # the round-1 guard had expired


def test_flee_chance_follows_speed():
    slow = sum(flees_first_turn(seed, ["troll"]) for seed in range(400)) / 400  # 50 + 5 * 4 = 70 %
    fast = sum(flees_first_turn(seed, ["wolf"]) for seed in range(400)) / 400  # 50 - 5 * 4 = 30 %
    assert 0.6 < slow < 0.8
    assert 0.2 < fast < 0.4


def test_successful_flee_leaves_the_fight_and_ends_a_solo_fight():
    state = solo(["troll"], seed=seed_where(flees_first_turn))
    engine.begin(state)
    events = engine.act(state, actor="p1", action="flee")
    assert [e.kind for e in events] == ["action", "left", "end"]
    assert events[0].data["fled"] is True and events[1].data["reason"] == "fled"
    assert events[2].data["outcome"] == "fled" and state.status == "fled"
    assert "p1" not in [p["id"] for p in events[0].view["participants"]]


def test_failed_flee_costs_the_turn():
    state = solo(["troll"], seed=seed_where(lambda s: not flees_first_turn(s)))
    engine.begin(state)
    events = engine.act(state, actor="p1", action="flee")
    assert events[0].data["fled"] is False
    assert events[1].data["actor"] == "troll-1"
    assert state.status == "active" and state.actor == "p1"


def test_monsters_only_target_players_still_fighting():
    def p1_flees_in_a_party(seed):
        state = duo(["troll"], seed=seed)
        engine.begin(state)
        engine.act(state, actor="p1", action="flee")
        return state.fighter("p1").fled

    state = duo(["troll"], seed=seed_where(p1_flees_in_a_party))
    engine.begin(state)
    events = engine.act(state, actor="p1", action="flee")
    assert [e.kind for e in events] == ["action", "left"]
    for _ in range(5):
        for event in engine.act(state, actor="p2", action="defend"):
            if event.data.get("actor") == "troll-1":
                assert event.data["target"] == "p2"
        if state.status != "active":
            break


def test_victory_when_every_monster_is_dead():
    state = solo(["goblin"])
    engine.begin(state)
    while state.status == "active":
        events = engine.act(state, actor="p1", action="attack", target="goblin-1")
    assert state.status == "victory" and state.actor is None
    assert events[-1].data == {"kind": "end", "turn": state.turn, "round": state.round, "outcome": "victory"}
    assert events[-2].view["status"] == "victory"


def test_defeat_when_every_player_is_dead():
    state = solo(["dragon", "dragon"])
    engine.begin(state)
    while state.status == "active":
        engine.act(state, actor="p1", action="defend")
    assert state.status == "defeat"
    assert not state.fighter("p1").alive


def test_timeout_and_abandon():
    state = solo(["troll"])
    engine.begin(state)
    events = engine.time_out(state)
    assert events[0].data == {"kind": "timeout", "turn": 1, "round": 1, "actor": "p1"}
    assert events[1].data["actor"] == "troll-1"
    events = engine.abandon(state)
    assert [e.kind for e in events] == ["left", "abandoned", "end"]
    assert events[0].data["reason"] == "abandoned" and state.status == "fled"


def test_rule_errors():
    state = duo(["goblin", "goblin"])
    engine.begin(state)  # the goblins are faster: they act, then it is p1's turn
    assert state.actor == "p1"
    cases = [
        (dict(actor="p1", action="dance"), "invalid_action"),
        (dict(actor="p2", action="attack", target="goblin-1"), "not_your_turn"),
        (dict(actor="p1", action="attack", round=state.round + 1, target="goblin-1"), "not_your_turn"),
        (dict(actor="p1", action="attack"), "invalid_action"),
        (dict(actor="p1", action="attack", target="nobody"), "invalid_action"),
        (dict(actor="p1", action="attack", target="p2"), "invalid_action"),
        (dict(actor="stranger", action="attack", target="goblin-1"), "invalid_action"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(RuleError) as caught:
            engine.act(state, **kwargs)
        assert caught.value.reason == reason, kwargs
    state.fighter("goblin-2").hp = 0
    with pytest.raises(RuleError) as caught:
        engine.act(state, actor="p1", action="attack", target="goblin-2")
    assert caught.value.reason == "invalid_action"
    state.status = "victory"
    with pytest.raises(RuleError) as caught:
        engine.act(state, actor="p1", action="defend")
    assert caught.value.reason == "invalid_action"


def test_state_survives_json():
    state = duo(["wolf", "troll"], seed=99)
    engine.begin(state)
    engine.act(state, actor=state.actor, action="defend")
    assert CombatState.from_json(state.to_json()) == state


def test_replay_reproduces_a_fight_from_its_inputs():
    state = duo(["goblin", "wolf"], seed=5)
    initial = state.to_json()
    log = [e.data for e in engine.begin(state)]
    moves = ["attack", "defend", "flee", "attack", "timeout"]
    step = 0
    while state.status == "active":
        move = moves[step % len(moves)]
        step += 1
        if move == "timeout":
            log += [e.data for e in engine.time_out(state)]
        else:
            target = first_living_monster(state) if move == "attack" else None
            log += [e.data for e in engine.act(state, actor=state.actor, action=move, target=target)]
    replayed, events = engine.replay(initial, log)
    assert replayed == state
    assert [e.data for e in events] == log


# --- the referee in the database ------------------------------------------------------------------


def start(user, monsters=("troll",), members=(), seed=3):
    return referee.start(
        user_id=str(user.pk), monsters=list(monsters), member_ids=[str(m.pk) for m in members], seed=seed
    )


def test_start_stores_session_participants_stats_and_log():
    alice, bob = make_user(), make_user()
    outcome = start(alice, ["wolf"], members=[bob])
    session = CombatSession.objects.get(pk=outcome.session_id)
    assert session.status == "active" and session.actor == str(alice.pk)
    assert session.deadline > timezone.now()
    assert set(session.participants.values_list("user_id", flat=True)) == {alice.pk, bob.pk}
    assert PlayerCombatStats.objects.filter(user__in=[alice, bob]).count() == 2
    kinds = list(session.log.values_list("kind", "action"))
    assert kinds == [("participant", "joined")] * 2 + [("start", ""), ("action", "attack")]  # the wolf is faster
    assert outcome.reply["type"] == "combat_state" and outcome.reply["turn"]["actor"] == "wolf-1"


def test_player_stats_come_from_the_database():
    alice = make_user()
    PlayerCombatStats.objects.create(user=alice, max_hp=99, attack=1, defence=1, speed=1)
    outcome = start(alice, ["goblin"])
    player = next(p for p in outcome.reply["participants"] if p["kind"] == "player")
    assert player["max_hp"] == 99


def test_one_active_fight_per_player_is_a_database_constraint():
    alice = make_user()
    outcome = start(alice)
    other = CombatSession.objects.create(seed=1, initial_state={}, state={})
    with pytest.raises(IntegrityError), transaction.atomic():
        CombatParticipant.objects.create(session=other, user=alice)
    with pytest.raises(ProtocolError) as caught:
        start(alice)
    assert caught.value.code == "invalid_action"
    assert caught.value.details == {"combat_session_id": outcome.session_id}
    # An ended participation does not count.
    CombatParticipant.objects.filter(user=alice).update(active=False)
    CombatParticipant.objects.create(session=other, user=alice)


def test_party_members_in_another_fight_stay_out():
    alice, bob = make_user(), make_user()
    start(bob)
    outcome = start(alice, members=[bob])
    assert outcome.players == [str(alice.pk)]


def test_compare_and_set_refuses_a_step_computed_from_an_old_turn():
    alice = make_user()
    outcome = start(alice, ["troll"])
    stale = CombatSession.objects.get(pk=outcome.session_id)
    referee.act(session_id=outcome.session_id, user_id=str(alice.pk), action="defend", target=None, round=None)
    state = CombatState.from_json(stale.state)
    events = engine.act(state, actor=str(alice.pk), action="attack", target="troll-1")
    assert referee.commit(stale, state, events, idle_timeouts=0, now=timezone.now()) is None
    moves = CombatLogEntry.objects.filter(session_id=outcome.session_id, actor=str(alice.pk), kind="action")
    assert list(moves.values_list("action", flat=True)) == ["defend"]


def test_action_after_the_deadline_times_the_turn_out_instead():
    alice = make_user()
    outcome = start(alice, ["troll"])
    CombatSession.objects.filter(pk=outcome.session_id).update(deadline=timezone.now() - timedelta(seconds=1))
    late = referee.act(session_id=outcome.session_id, user_id=str(alice.pk), action="defend", target=None, round=None)
    assert late.refusal is not None and late.refusal.code == "not_your_turn"
    assert [e.event["type"] for e in late.effects][:2] == ["combat_timeout", "combat_state"]
    kinds = CombatLogEntry.objects.filter(session_id=outcome.session_id).values_list("kind", flat=True)
    assert "timeout" in kinds and list(kinds).count("timeout") == 1


def test_timeout_only_fires_when_due_and_only_once():
    alice = make_user()
    outcome = start(alice, ["troll"])
    args = dict(session_id=outcome.session_id, turn=outcome.turn, connected={str(alice.pk)})
    assert referee.time_out(**args) == (None, [])  # not due yet
    CombatSession.objects.filter(pk=outcome.session_id).update(deadline=timezone.now())
    fired, _ = referee.time_out(**args)
    assert fired is not None
    assert referee.time_out(**args) == (None, [])  # that turn is gone


async def test_concurrent_sweeps_and_timers_fire_one_timeout_per_turn():
    alice = await db(make_user)()
    outcome = await db(start)(alice, ["troll"])
    await db(CombatSession.objects.filter(pk=outcome.session_id).update)(deadline=timezone.now())
    results = await asyncio.gather(
        combat.combat_timeouts_sweep(),
        combat.combat_timeouts_sweep(),
        combat.combat_timeout_fire(session_id=outcome.session_id, turn=outcome.turn),
        combat.combat_timeouts_sweep(),
    )
    assert sum(int(r) for r in results) == 1
    timeouts = await db(CombatLogEntry.objects.filter(session_id=outcome.session_id, kind="timeout").count)()
    assert timeouts == 1


def test_unattended_fight_is_abandoned_after_consecutive_timeouts():
    alice = make_user()
    outcome = start(alice, ["goblin"])  # weak: the player survives the unanswered turns
    session_id, turn = outcome.session_id, outcome.turn
    for n in range(referee.ABANDON_AFTER_TIMEOUTS):
        CombatSession.objects.filter(pk=session_id).update(deadline=timezone.now())
        fired, _ = referee.time_out(session_id=session_id, turn=turn, connected=set())
        turn = fired.turn
        session = CombatSession.objects.get(pk=session_id)
        assert session.idle_timeouts == n + 1
    assert session.status == "fled" and session.ended_at is not None
    assert not CombatParticipant.objects.filter(session_id=session_id, active=True).exists()
    kinds = list(session.log.values_list("kind", flat=True))
    assert kinds.count("timeout") == referee.ABANDON_AFTER_TIMEOUTS and "abandoned" in kinds
    end = [e.event for e in fired.effects if e.kind == "user"]
    assert [(e["type"], e["outcome"]) for e in end] == [("combat_end", "fled")]


def test_a_connected_player_resets_the_idle_count():
    alice = make_user()
    outcome = start(alice, ["goblin"])
    CombatSession.objects.filter(pk=outcome.session_id).update(deadline=timezone.now(), idle_timeouts=2)
    referee.time_out(session_id=outcome.session_id, turn=outcome.turn, connected={str(alice.pk)})
    assert CombatSession.objects.get(pk=outcome.session_id).idle_timeouts == 0


def test_unknown_presence_never_abandons():
    alice = make_user()
    outcome = start(alice, ["goblin"])
    CombatSession.objects.filter(pk=outcome.session_id).update(deadline=timezone.now(), idle_timeouts=2)
    referee.time_out(session_id=outcome.session_id, turn=outcome.turn, connected=None)
    session = CombatSession.objects.get(pk=outcome.session_id)
    assert session.status == "active" and session.idle_timeouts == 0


def test_timeout_announces_players_whose_connection_vanished():
    alice = make_user()
    outcome = start(alice, ["troll"])
    CombatSession.objects.filter(pk=outcome.session_id).update(deadline=timezone.now())
    _, gone = referee.time_out(session_id=outcome.session_id, turn=outcome.turn, connected=set())
    assert gone == [str(alice.pk)]
    assert not CombatParticipant.objects.get(user=alice).connected


def test_stored_log_replays_to_the_stored_state():
    alice, bob = make_user(), make_user()
    outcome = start(alice, ["goblin", "wolf"], members=[bob])
    session_id = outcome.session_id
    while True:
        session = CombatSession.objects.get(pk=session_id)
        if session.status != "active":
            break
        state = CombatState.from_json(session.state)
        if session.turn % 3 == 0:
            CombatSession.objects.filter(pk=session_id).update(deadline=timezone.now())
            referee.time_out(session_id=session_id, turn=session.turn, connected=None)
            continue
        target = first_living_monster(state)
        referee.act(session_id=session_id, user_id=session.actor, action="attack", target=target, round=None)
    log = [entry.event for entry in session.log.order_by("id") if entry.kind != "participant"]
    replayed, events = engine.replay(session.initial_state, log)
    assert replayed.to_json() == session.state
    assert [e.data for e in events] == log


async def test_dead_instance_hook_announces_players_whose_connection_went_with_it():
    alice = await db(make_user)()
    outcome = await db(start)(alice, ["troll"])
    # Alice has no /ws/combat connection anywhere (her instance's presence was purged).
    assert await combat.combat_presence_reconcile("dead-instance") == 1
    participant = await db(CombatParticipant.objects.get)(user=alice)
    assert participant.active and not participant.connected
    assert await combat.combat_presence_reconcile("dead-instance") == 0  # announced once
    kinds = await db(lambda: list(CombatLogEntry.objects.filter(session_id=outcome.session_id, kind="participant")))()
    assert [k.action for k in kinds] == ["joined", "disconnected"]


async def test_the_sweep_alone_times_turns_out(settings):

    settings.COMBAT_TURN_TIMEOUT = 0.2
    runtime = await ensure_runtime()
    assert "combat-timeouts" in [name for name, _, _ in runtime.jobs]
    alice = await db(make_user)()
    # Stored without publishing: no instance armed a local timer for this turn.
    outcome = await db(start)(alice, ["troll"])

    async def timed_out():
        return await db(CombatLogEntry.objects.filter(session_id=outcome.session_id, kind="timeout").exists)()

    for _ in range(100):
        if await timed_out():
            break
        await asyncio.sleep(0.05)
    assert await timed_out()
