"""What can fight: the monster catalogue and the default stats of a player, as plain data.

Part of the wire contract (docs/protocol.md §6: clients name monsters by these keys); the combat
engine and the models read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stats:
    max_hp: int
    attack: int
    defence: int
    speed: int  # higher acts earlier in each round


@dataclass(frozen=True, slots=True)
class MonsterKind:
    key: str
    name: str
    stats: Stats


# Tuned against PLAYER_DEFAULT: a goblin or a wolf is an easy solo fight, a troll a hard one,
# a dragon needs a party (it deals about half a fresh player's hit points per bite).
MONSTERS: dict[str, MonsterKind] = {
    kind.key: kind
    for kind in (
        MonsterKind("goblin", "Goblin", Stats(max_hp=12, attack=5, defence=1, speed=12)),
        MonsterKind("wolf", "Wolf", Stats(max_hp=16, attack=6, defence=2, speed=14)),
        MonsterKind("troll", "Troll", Stats(max_hp=40, attack=9, defence=4, speed=6)),
        MonsterKind("dragon", "Dragon", Stats(max_hp=120, attack=16, defence=8, speed=9)),
    )
}

PLAYER_DEFAULT = Stats(max_hp=30, attack=8, defence=3, speed=10)

MAX_MONSTERS_PER_FIGHT = 6
