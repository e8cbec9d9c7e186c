"""Combat rules: the monster catalogue and a pure, deterministic turn engine (no Django, no Channels).

`realtime.services.combat` stores the engine's state and applies its steps with a compare-and-set
on the turn, so every instance agrees on one fight.
"""
