"""The combat rules as pure functions over a JSON-serialisable state.

Every random draw comes from `Random(f"{seed}:{turn}")`, so a step's outcome depends only on the
stored seed, the turn number and the input: a fight is replayed exactly from its initial state
and the inputs recorded in its log (`replay`). The engine never reads a clock; timeouts and
abandonment are inputs like any action.

Rules:
- Turn order: speed, highest first; on a tie players before monsters, then in joining order.
  Each living fighter still in the fight acts once per round; the round ends after the last.
- `attack`: damage = attack × (85–115 %) − defence ÷ 2, at least 1; a 10 % critical hit deals
  1.5×. A defending target takes half (rounded up) and stops defending.
- `defend`: halves the next damage taken before the defender's next turn.
- `flee`: succeeds with 50 % + 5 % per point of speed above the fastest living monster
  (between 20 % and 90 %); a player who flees leaves the fight.
- Monsters attack a living player still in the fight, chosen at random.
- Victory when every monster is dead. When no player is left standing in the fight: `fled` if
  at least one escaped alive, otherwise `defeat`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from realtime.protocol.catalogue import MAX_MONSTERS_PER_FIGHT, MONSTERS, Stats

ACTIONS = ("attack", "defend", "flee")
PLAYER = "player"
MONSTER = "monster"
ACTIVE = "active"

CRITICAL_PERCENT = 10
FLEE_BASE_PERCENT = 50
FLEE_PERCENT_PER_SPEED = 5
FLEE_MIN_PERCENT, FLEE_MAX_PERCENT = 20, 90


class RuleError(Exception):
    """An input the rules refuse; `reason` is `not_your_turn` or `invalid_action`."""

    def __init__(self, reason: Literal["not_your_turn", "invalid_action"], message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details


@dataclass(slots=True)
class Fighter:
    id: str
    kind: str
    name: str
    max_hp: int
    hp: int
    attack: int
    defence: int
    speed: int
    defending: bool = False
    fled: bool = False

    @property
    def alive(self) -> bool:
        return self.hp > 0

    @property
    def can_act(self) -> bool:
        return self.alive and not self.fled


@dataclass(slots=True)
class CombatState:
    seed: int
    fighters: list[Fighter]  # in turn order
    round: int = 1
    turn: int = 0  # steps applied so far; the version the service compares and sets
    actor: str | None = None
    status: str = ACTIVE

    def fighter(self, fighter_id: str | None) -> Fighter | None:
        return next((f for f in self.fighters if f.id == fighter_id), None)

    @property
    def players(self) -> list[Fighter]:
        return [f for f in self.fighters if f.kind == PLAYER]

    @property
    def monsters(self) -> list[Fighter]:
        return [f for f in self.fighters if f.kind == MONSTER]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CombatState:
        return cls(**{**data, "fighters": [Fighter(**f) for f in data["fighters"]]})


@dataclass(frozen=True, slots=True)
class PlayerEntry:
    id: str
    name: str
    stats: Stats


@dataclass(slots=True)
class Event:
    """One thing that happened. `data` goes to the log; `view` is the state right after it."""

    data: dict[str, Any]
    view: dict[str, Any] | None = field(default=None)

    @property
    def kind(self) -> str:
        return self.data["kind"]


# --- setting up -------------------------------------------------------------------------------


def unknown_monsters(keys: Iterable[str]) -> list[str]:
    return [key for key in keys if key not in MONSTERS]


def new_combat(*, seed: int, players: Sequence[PlayerEntry], monsters: Sequence[str]) -> CombatState:
    """The state before the first step: fighters in turn order, nobody's turn yet."""
    if not players:
        raise ValueError("a fight needs at least one player")
    if not 1 <= len(monsters) <= MAX_MONSTERS_PER_FIGHT:
        raise ValueError(f"a fight has 1 to {MAX_MONSTERS_PER_FIGHT} monsters")
    fighters = [
        Fighter(p.id, PLAYER, p.name, p.stats.max_hp, p.stats.max_hp, p.stats.attack, p.stats.defence, p.stats.speed)
        for p in players
    ]
    counts = {key: monsters.count(key) for key in monsters}
    numbered: dict[str, int] = {}
    for key in monsters:
        kind = MONSTERS[key]
        numbered[key] = numbered.get(key, 0) + 1
        name = kind.name if counts[key] == 1 else f"{kind.name} {numbered[key]}"
        s = kind.stats
        fighters.append(
            Fighter(f"{key}-{numbered[key]}", MONSTER, name, s.max_hp, s.max_hp, s.attack, s.defence, s.speed)
        )
    joined = {f.id: index for index, f in enumerate(fighters)}
    fighters.sort(key=lambda f: (-f.speed, f.kind != PLAYER, joined[f.id]))
    return CombatState(seed=seed, fighters=fighters)


def view(state: CombatState) -> dict[str, Any]:
    """What clients see (docs/protocol.md §6 `combat_state` without envelope and deadline).

    Players who fled are no longer listed; the dead stay, with `alive: false`.
    """
    return {
        "status": state.status,
        "round": state.round,
        "actor": state.actor,
        "participants": [
            {"id": f.id, "kind": f.kind, "name": f.name, "hp": f.hp, "max_hp": f.max_hp, "alive": f.alive}
            for f in state.fighters
            if not f.fled
        ],
    }


# --- steps ----------------------------------------------------------------------------------


def begin(state: CombatState) -> list[Event]:
    """Give the first turn; monsters faster than every player act straight away."""
    if state.actor is not None or state.turn:
        raise ValueError("the fight has already begun")
    _advance(state)
    events = [Event({"kind": "start", "turn": state.turn, "round": state.round}, view(state))]
    _monsters_act(state, events)
    return events


def act(
    state: CombatState, *, actor: str, action: str, target: str | None = None, round: int | None = None
) -> list[Event]:
    """A player's action on their turn, then every monster turn up to the next player's turn."""
    _require_active(state)
    if action not in ACTIONS:
        raise RuleError("invalid_action", f"Unknown action; use one of {', '.join(ACTIONS)}.", action=action[:32])
    fighter = state.fighter(actor)
    if fighter is None or fighter.kind != PLAYER:
        raise RuleError("invalid_action", "You are not fighting in this combat.")
    if not fighter.can_act:
        raise RuleError("invalid_action", "You can no longer act in this fight.")
    if state.actor != actor or (round is not None and round != state.round):
        raise RuleError("not_your_turn", "It is not your turn.", actor=state.actor, round=state.round)
    victim = None
    if action == "attack":
        victim = state.fighter(target)
        if victim is None:
            raise RuleError("invalid_action", "Unknown target.", target=(target or "")[:64] or None)
        if victim.kind != MONSTER:
            raise RuleError("invalid_action", "You can only attack monsters.", target=victim.id)
        if not victim.alive:
            raise RuleError("invalid_action", "That target is already dead.", target=victim.id)

    rng = _next_step(state)
    events: list[Event] = []
    if action == "attack":
        assert victim is not None
        events.append(_strike(state, rng, fighter, victim))
    elif action == "defend":
        fighter.defending = True
        events.append(_action_event(state, fighter, "defend"))
    else:
        fastest = max((m.speed for m in state.monsters if m.alive), default=0)
        percent = FLEE_BASE_PERCENT + FLEE_PERCENT_PER_SPEED * (fighter.speed - fastest)
        percent = max(FLEE_MIN_PERCENT, min(FLEE_MAX_PERCENT, percent))
        fled = rng.randint(1, 100) <= percent
        events.append(_action_event(state, fighter, "flee", fled=fled))
        if fled:
            fighter.fled = True
            fighter.defending = False
    _settle(state, events)
    if action == "flee" and fighter.fled:
        events.insert(1, Event({"kind": "left", "turn": state.turn, "actor": fighter.id, "reason": "fled"}))
    _monsters_act(state, events)
    return events


def time_out(state: CombatState) -> list[Event]:
    """The current player lost their turn; then the monsters up to the next player's turn."""
    _require_active(state)
    fighter = state.fighter(state.actor)
    if fighter is None or fighter.kind != PLAYER:
        raise RuleError("invalid_action", "Only a player's turn can time out.")
    _next_step(state)
    events = [Event({"kind": "timeout", "turn": state.turn, "round": state.round, "actor": fighter.id})]
    _settle(state, events)
    _monsters_act(state, events)
    return events


def abandon(state: CombatState) -> list[Event]:
    """Nobody came back: every player still standing leaves, and the fight ends."""
    _require_active(state)
    _next_step(state)
    events: list[Event] = []
    for player in state.players:
        if player.can_act:
            player.fled = True
            player.defending = False
            events.append(Event({"kind": "left", "turn": state.turn, "actor": player.id, "reason": "abandoned"}))
    events.append(Event({"kind": "abandoned", "turn": state.turn, "round": state.round}))
    _settle(state, events)
    return events


def replay(initial: dict[str, Any], log: Iterable[dict[str, Any]]) -> tuple[CombatState, list[Event]]:
    """Re-run a fight from its initial state and the player inputs found in its log.

    Monster turns are not inputs: they are recomputed, so comparing the returned events with the
    log checks that the stored fight is exactly what the rules produce.
    """
    state = CombatState.from_json(initial)
    events = begin(state)
    player_ids = {p.id for p in state.players}
    for entry in log:
        kind = entry.get("kind")
        if kind == "action" and entry["actor"] in player_ids:
            events += act(state, actor=entry["actor"], action=entry["action"], target=entry.get("target"))
        elif kind == "timeout":
            events += time_out(state)
        elif kind == "abandoned":
            events += abandon(state)
    return state, events


# --- internals --------------------------------------------------------------------------------


def _require_active(state: CombatState) -> None:
    if state.status != ACTIVE:
        raise RuleError("invalid_action", "The fight is over.", status=state.status)


def _next_step(state: CombatState) -> random.Random:
    state.turn += 1
    # A string seed is hashed with SHA-512: the same draws on every machine and Python run.
    return random.Random(f"{state.seed}:{state.turn}")


def _action_event(
    state: CombatState,
    actor: Fighter,
    action: str,
    *,
    target: Fighter | None = None,
    damage: int = 0,
    critical: bool = False,
    fled: bool | None = None,
) -> Event:
    data: dict[str, Any] = {
        "kind": "action",
        "turn": state.turn,
        "round": state.round,
        "actor": actor.id,
        "action": action,
        "target": target.id if target else None,
        "damage": damage,
        "target_hp": target.hp if target else None,
    }
    if action == "attack":
        data["critical"] = critical
    if fled is not None:
        data["fled"] = fled
    return Event(data)


def _strike(state: CombatState, rng: random.Random, attacker: Fighter, target: Fighter) -> Event:
    damage = max(1, attacker.attack * rng.randint(85, 115) // 100 - target.defence // 2)
    critical = rng.randint(1, 100) <= CRITICAL_PERCENT
    if critical:
        damage = damage * 3 // 2
    if target.defending:
        damage = (damage + 1) // 2
        target.defending = False
    target.hp = max(0, target.hp - damage)
    return _action_event(state, attacker, "attack", target=target, damage=damage, critical=critical)


def _outcome(state: CombatState) -> str | None:
    if not any(m.alive for m in state.monsters):
        return "victory"
    if any(p.can_act for p in state.players):
        return None
    return "fled" if any(p.fled for p in state.players) else "defeat"


def _settle(state: CombatState, events: list[Event]) -> None:
    """After a step: end the fight or pass the turn; the step's last event gets the new view."""
    outcome = _outcome(state)
    if outcome is not None:
        state.status = outcome
        state.actor = None
    else:
        _advance(state)
    events[-1].view = view(state)
    if outcome is not None:
        events.append(Event({"kind": "end", "turn": state.turn, "round": state.round, "outcome": outcome}))


def _advance(state: CombatState) -> None:
    order = state.fighters
    index = -1 if state.actor is None else next(i for i, f in enumerate(order) if f.id == state.actor)
    for _ in range(len(order)):
        index += 1
        if index == len(order):
            index = 0
            state.round += 1
        fighter = order[index]
        if fighter.can_act:
            state.actor = fighter.id
            fighter.defending = False  # a defence lasts until one's own next turn
            return
    state.actor = None


def _monsters_act(state: CombatState, events: list[Event]) -> None:
    while state.status == ACTIVE:
        monster = state.fighter(state.actor)
        if monster is None or monster.kind != MONSTER:
            return
        rng = _next_step(state)
        targets = [p for p in state.players if p.can_act]
        events.append(_strike(state, rng, monster, rng.choice(targets)))
        _settle(state, events)
