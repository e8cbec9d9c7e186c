"""The referee: every change to a fight is read from the database, run through the rules
(`engine.py`) and written back with a compare-and-set on the turn (docs/protocol.md §6).

`UPDATE … WHERE id = <id> AND turn = <turn read> AND status = 'active'`: of two steps computed
from the same turn — an action arriving on each of two instances, or a timer racing an action —
exactly one is stored; the other caller gets `not_your_turn` (a timer just stops). Each function
here is one database operation (run through `database_sync_to_async` by the service); nothing
here sends anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from realtime.features.combat import engine
from realtime.features.combat.engine import CombatState, Event, RuleError
from realtime.features.combat.frames import ACTIVE, Effect, effects_of, participant_event, state_frame
from realtime.models import CombatLogEntry, CombatParticipant, CombatSession, PlayerCombatStats
from realtime.protocol import ErrorCode, ProtocolError
from realtime.protocol.catalogue import Stats

# Three unattended turns (90 s at the default timeout) is long enough to ride out a reconnect
# or an instance failover, short enough that a forgotten fight does not hold its players.
ABANDON_AFTER_TIMEOUTS = 3


@dataclass(slots=True)
class Outcome:
    """A committed step: what to publish, and the turn a timer should watch."""

    session_id: str
    turn: int
    deadline: datetime | None
    effects: list[Effect] = field(default_factory=list)
    players: list[str] = field(default_factory=list)
    # The first effect's frame, answered directly (with the client's `id`) to the connection
    # that asked; that connection is then left out of the first broadcast.
    reply: dict[str, Any] | None = None
    refusal: ProtocolError | None = None  # raise after publishing (an action that came too late)


def _log_entries(session_id: Any, events: Iterable[Event]) -> list[CombatLogEntry]:
    return [
        CombatLogEntry(
            session_id=session_id,
            turn=e.data["turn"],
            round=e.data.get("round", 0),
            kind=e.data["kind"],
            actor=e.data.get("actor") or "",
            action=e.data.get("action") or e.data.get("reason") or e.data.get("outcome") or "",
            target=e.data.get("target") or "",
            damage=e.data.get("damage"),
            target_hp=e.data.get("target_hp"),
            event=e.data,
        )
        for e in events
    ]


def _log_participant(session: CombatSession, user_id: str, what: str) -> None:
    CombatLogEntry.objects.create(
        session=session,
        turn=session.turn,
        round=session.round,
        kind="participant",
        actor=user_id,
        action=what,
        event={"kind": "participant", "user_id": user_id, "event": what},
    )


def _deadline(state: CombatState, now: datetime) -> datetime | None:
    if state.status != ACTIVE:
        return None
    return now + timedelta(seconds=settings.COMBAT_TURN_TIMEOUT)


def commit(
    session: CombatSession, state: CombatState, events: list[Event], *, idle_timeouts: int, now: datetime
) -> Outcome | None:
    """Store a step if nobody stored another since `session` was read; None if someone did."""
    deadline = _deadline(state, now)
    ended = state.status != ACTIVE
    stored = CombatSession.objects.filter(pk=session.pk, turn=session.turn, status=ACTIVE).update(
        state=state.to_json(),
        turn=state.turn,
        round=state.round,
        actor=state.actor or "",
        status=state.status,
        deadline=deadline,
        idle_timeouts=idle_timeouts,
        ended_at=now if ended else None,
    )
    if not stored:
        return None
    CombatLogEntry.objects.bulk_create(_log_entries(session.pk, events))
    left = [e.data["actor"] for e in events if e.kind == "left"]
    if left:
        CombatParticipant.objects.filter(session_id=session.pk, user_id__in=left).update(active=False, left_at=now)
    if ended:
        CombatParticipant.objects.filter(session_id=session.pk, active=True).update(active=False, left_at=now)
    session_id = str(session.pk)
    return Outcome(
        session_id=session_id,
        turn=state.turn,
        deadline=deadline,
        effects=effects_of(session_id, events, state, deadline),
        players=[p.id for p in state.players],
    )


def active_session_id(user_id: str) -> str | None:
    found = CombatParticipant.objects.filter(user_id=user_id, active=True).values_list("session_id", flat=True).first()
    return str(found) if found else None


def _already_fighting(session_id: str) -> ProtocolError:
    return ProtocolError(
        ErrorCode.INVALID_ACTION, "You are already in a fight; finish it first.", combat_session_id=session_id
    )


def _player_stats(user_ids: list[str]) -> dict[str, Stats]:
    PlayerCombatStats.objects.bulk_create([PlayerCombatStats(user_id=u) for u in user_ids], ignore_conflicts=True)
    return {
        str(row.user_id): Stats(row.max_hp, row.attack, row.defence, row.speed)
        for row in PlayerCombatStats.objects.filter(user_id__in=user_ids)
    }


def party_members(user_id: str) -> list[str]:
    User = get_user_model()
    party_id = User.objects.filter(pk=user_id).values_list("party_id", flat=True).first()
    if party_id is None:
        return []
    return [str(pk) for pk in User.objects.filter(party_id=party_id).exclude(pk=user_id).values_list("pk", flat=True)]


def start(*, user_id: str, monsters: list[str], member_ids: list[str], seed: int) -> Outcome:
    User = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        current = active_session_id(user_id)
        if current is not None:
            raise _already_fighting(current)
        session = CombatSession.objects.create(seed=seed, initial_state={}, state={}, created_by_id=user_id)
        try:
            with transaction.atomic():
                CombatParticipant.objects.create(session=session, user_id=user_id, joined_at=now)
        except IntegrityError:
            # A start on another instance won the race; the constraint, not the check above, decides.
            raise _already_fighting(active_session_id(user_id) or "") from None
        joined = [user_id]
        for member_id in member_ids:
            try:
                with transaction.atomic():
                    CombatParticipant.objects.create(session=session, user_id=member_id, joined_at=now)
                joined.append(member_id)
            except IntegrityError:
                continue  # busy in a fight of their own: they stay out of this one
        names = dict(User.objects.filter(pk__in=joined).values_list("pk", "username"))
        names = {str(pk): name for pk, name in names.items()}
        stats = _player_stats(joined)
        players = [engine.PlayerEntry(uid, names[uid], stats[uid]) for uid in joined]
        state = engine.new_combat(seed=seed, players=players, monsters=monsters)
        session.initial_state = state.to_json()
        session.save(update_fields=["initial_state"])
        for uid in joined:
            _log_participant(session, uid, "joined")
        outcome = commit(session, state, engine.begin(state), idle_timeouts=0, now=now)
        assert outcome is not None, "a new session cannot have moved on"
    # The opening combat_state answers the starter; the others get it, then who joined.
    outcome.reply = outcome.effects[0].event
    outcome.effects[1:1] = [Effect("group", participant_event(outcome.session_id, uid, "joined")) for uid in joined]
    return outcome


def act(*, session_id: str, user_id: str, action: str, target: str | None, round: int | None) -> Outcome:
    now = timezone.now()
    with transaction.atomic():
        session = CombatSession.objects.filter(pk=session_id).first()
        if session is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "No such combat session.", combat_session_id=session_id)
        participant = CombatParticipant.objects.filter(session=session, user_id=user_id).first()
        if participant is None:
            raise ProtocolError(ErrorCode.FORBIDDEN, "You are not in this fight.", combat_session_id=session_id)
        if session.status != ACTIVE:
            raise ProtocolError(ErrorCode.INVALID_ACTION, "The fight is over.", status=session.status)
        if not participant.active:
            raise ProtocolError(ErrorCode.INVALID_ACTION, "You left this fight.")
        state = CombatState.from_json(session.state)
        late = session.actor == user_id and session.deadline is not None and session.deadline <= now
        try:
            # An action after the deadline finds the turn already lost: time it out right here.
            events = (
                engine.time_out(state)
                if late
                else engine.act(state, actor=user_id, action=action, target=target, round=round)
            )
        except RuleError as exc:
            raise ProtocolError(ErrorCode(exc.reason), exc.message, **exc.details) from None
        outcome = commit(session, state, events, idle_timeouts=0, now=now)
    if outcome is None:
        raise ProtocolError(ErrorCode.NOT_YOUR_TURN, "Another action took this turn first.")
    if late:
        outcome.refusal = ProtocolError(ErrorCode.NOT_YOUR_TURN, "Your turn timed out.")
    else:
        outcome.reply = outcome.effects[0].event  # the caller's combat_action_result
    return outcome


def mark_disconnected_in(session: CombatSession, user_ids: Iterable[str]) -> list[str]:
    gone = []
    for user_id in user_ids:
        if CombatParticipant.objects.filter(session=session, user_id=user_id, active=True, connected=True).update(
            connected=False
        ):
            _log_participant(session, user_id, "disconnected")
            gone.append(user_id)
    return gone


def time_out(*, session_id: str, turn: int, connected: set[str] | None) -> tuple[Outcome | None, list[str]]:
    """Time out turn `turn` if it is still running and overdue. `connected`: players with a
    /ws/combat connection (None: unknown, presence was unavailable)."""
    now = timezone.now()
    with transaction.atomic():
        session = CombatSession.objects.filter(pk=session_id, turn=turn, status=ACTIVE).first()
        if session is None or session.deadline is None or session.deadline > now:
            return None, []
        state = CombatState.from_json(session.state)
        events = engine.time_out(state)
        # Unknown presence counts as connected: never abandon a fight because Redis hiccuped.
        idle = 0 if connected is None or connected else session.idle_timeouts + 1
        if state.status == ACTIVE and idle >= ABANDON_AFTER_TIMEOUTS:
            events += engine.abandon(state)
        outcome = commit(session, state, events, idle_timeouts=idle, now=now)
        gone: list[str] = []
        if outcome is not None and connected is not None:
            # Catch up on departures nobody announced (a connection lost with its instance).
            players = [p for p in outcome.players if p not in connected]
            gone = mark_disconnected_in(session, players)
    return outcome, gone


def due_sessions(*, limit: int) -> list[tuple[str, int, list[str]]]:
    due = list(
        CombatSession.objects.filter(status=ACTIVE, deadline__lte=timezone.now())
        .order_by("deadline")
        .values_list("pk", "turn")[:limit]
    )
    return _with_players(due)


def due_session(*, session_id: str, turn: int) -> list[tuple[str, int, list[str]]]:
    due = list(
        CombatSession.objects.filter(pk=session_id, turn=turn, status=ACTIVE, deadline__lte=timezone.now()).values_list(
            "pk", "turn"
        )
    )
    return _with_players(due)


def _with_players(due: list[tuple[Any, int]]) -> list[tuple[str, int, list[str]]]:
    if not due:
        return []
    players: dict[str, list[str]] = {str(pk): [] for pk, _ in due}
    rows = CombatParticipant.objects.filter(session_id__in=[pk for pk, _ in due], active=True)
    for session_id, user_id in rows.values_list("session_id", "user_id"):
        players[str(session_id)].append(str(user_id))
    return [(str(pk), turn, players[str(pk)]) for pk, turn in due]


def state_of(*, session_id: str | None, user_id: str) -> dict[str, Any]:
    if session_id is None:
        session_id = active_session_id(user_id)
        if session_id is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "You are not in a fight.")
    session = CombatSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, "No such combat session.", combat_session_id=session_id)
    if not CombatParticipant.objects.filter(session=session, user_id=user_id).exists():
        raise ProtocolError(ErrorCode.FORBIDDEN, "You are not in this fight.", combat_session_id=session_id)
    return state_frame(str(session.pk), engine.view(CombatState.from_json(session.state)), session.deadline)


def resume(*, user_id: str, session_id: str) -> tuple[dict[str, Any], bool] | None:
    with transaction.atomic():
        participant = (
            CombatParticipant.objects.select_related("session")
            .filter(user_id=user_id, session_id=session_id, active=True)
            .first()
        )
        if participant is None:
            return None
        session = participant.session
        reconnected = bool(CombatParticipant.objects.filter(pk=participant.pk, connected=False).update(connected=True))
        if reconnected:
            _log_participant(session, user_id, "reconnected")
    view = engine.view(CombatState.from_json(session.state))
    return state_frame(str(session.pk), view, session.deadline), reconnected


def disconnect(*, user_id: str) -> str | None:
    with transaction.atomic():
        participant = CombatParticipant.objects.select_related("session").filter(user_id=user_id, active=True).first()
        if participant is None:
            return None
        gone = mark_disconnected_in(participant.session, [user_id])
    return str(participant.session_id) if gone else None


def connected_players() -> list[tuple[str, str]]:
    rows = CombatParticipant.objects.filter(active=True, connected=True).values_list("session_id", "user_id")
    return [(str(s), str(u)) for s, u in rows]


# --- retention -----------------------------------------------------------------------------------

PRUNE_BATCH = 1000  # sessions per DELETE (their participants and log go with them)


def history_prune(*, older_than_days: float) -> int:
    """Delete fights that ended more than `older_than_days` ago, with their log; running fights
    are never touched. Returns how many fights were deleted."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    while True:
        ended = CombatSession.objects.exclude(status=ACTIVE).filter(ended_at__lt=cutoff)
        ids = list(ended.values_list("pk", flat=True)[:PRUNE_BATCH])
        if not ids:
            return total
        CombatSession.objects.filter(pk__in=ids).delete()
        total += len(ids)
