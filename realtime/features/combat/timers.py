"""Turn timers: a precise timer on the instance that started a player's turn, and on every
instance a periodic sweep for overdue turns (the fallback when that instance is gone). Both fire
through the referee's compare-and-set, so a turn times out exactly once across the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

# A local timer fires this much after the deadline, so it never finds the turn not yet due.
TIMER_SLACK_SECONDS = 0.01
# Overdue turns one sweep handles; the next sweep takes the rest.
SWEEP_BATCH = 200

Fire = Callable[[str, int], Coroutine[Any, Any, Any]]
Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


def sweep_interval() -> float:
    """How often each instance looks for overdue turns: a quarter timeout, 0.1–1 s."""
    return min(1.0, max(0.1, settings.COMBAT_TURN_TIMEOUT / 4))


class TurnTimers:
    """The local timers of this instance, one per fight (the turn it last started)."""

    def __init__(self, *, fire: Fire, spawn: Spawn) -> None:
        self._fire = fire
        self._spawn = spawn
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def arm(self, session_id: str, turn: int, deadline: datetime | None) -> None:
        """Watch `turn` of a fight (replacing its previous timer); no deadline: the fight is over
        or a monster acts next."""
        previous = self._handles.pop(session_id, None)
        if previous is not None:
            previous.cancel()
        if deadline is None:
            return
        delay = max(0.0, (deadline - timezone.now()).total_seconds()) + TIMER_SLACK_SECONDS
        self._handles[session_id] = asyncio.get_running_loop().call_later(delay, self._fired, session_id, turn)

    def _fired(self, session_id: str, turn: int) -> None:
        self._handles.pop(session_id, None)
        self._spawn(self._fire(session_id, turn), f"combat timer {session_id}")

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
