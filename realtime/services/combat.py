"""Combat sessions (PROTOCOL §6): the database referees every fight, the engine does the maths.

Every change reads the session, runs the rules (`realtime.combat.engine`) and writes back with
`UPDATE … WHERE id = <id> AND turn = <turn read> AND status = 'active'`. Of two steps computed
from the same turn — an action arriving on each of two instances, or a timer racing an action —
exactly one is stored; the other caller gets `not_your_turn` (a timer just stops). Frames go out
only after the commit, in step order, to the session group that the participants' /ws/combat
connections join on every instance.

Turn timers: the instance that starts a player's turn arms a precise local timer, and every
instance sweeps for overdue turns (`runtime.every`). Both fire through the same compare-and-set,
so a turn times out exactly once even when the player's own instance is gone. A fight nobody is
connected to ends by itself after `ABANDON_AFTER_TIMEOUTS` consecutive timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from realtime import groups
from realtime.combat import engine
from realtime.combat.catalogue import Stats
from realtime.combat.engine import CombatState, Event, RuleError
from realtime.events import broadcast_to_channel, build_event, send_control, send_personal_message
from realtime.models import CombatLogEntry, CombatParticipant, CombatSession, PlayerCombatStats
from realtime.protocol import ErrorCode, ProtocolError, iso_or_none

if TYPE_CHECKING:
    from realtime.connection import Connection
    from realtime.runtime import Runtime

logger = logging.getLogger(__name__)

COMBAT = frozenset({"combat"})
ACTIVE = CombatSession.Status.ACTIVE

# Three unattended turns (90 s at the default timeout) is long enough to ride out a reconnect
# or an instance failover, short enough that a forgotten fight does not hold its players.
ABANDON_AFTER_TIMEOUTS = 3
# How long a start waits for the participants' connections to join the session group before it
# sends the first frames (their instances subscribe to the group; normally a few milliseconds).
JOIN_WAIT_SECONDS = 2.0
SWEEP_BATCH = 200
# A local timer fires this much after the deadline, so it never finds the turn not yet due.
TIMER_SLACK_SECONDS = 0.01


def sweep_interval() -> float:
    """How often each instance looks for overdue turns: a quarter timeout, 0.1–1 s."""
    return min(1.0, max(0.1, settings.COMBAT_TURN_TIMEOUT / 4))


# --- results of a step --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effect:
    """One outbound message of a step, published in order after the commit."""

    # "group": to the session group; "user": personal (kept if offline); "leave": the user's
    # connections leave the session group; "close": every connection leaves it.
    kind: Literal["group", "user", "leave", "close"]
    event: dict[str, Any] | None = None
    user_id: str | None = None
    exclude_connection: str | None = None


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


# --- frames -------------------------------------------------------------------------------------


def state_frame(session_id: str, view: dict[str, Any], deadline: datetime | None) -> dict[str, Any]:
    """`combat_state` exactly as PROTOCOL §6 shows it; `deadline` only on a player's running turn."""
    actor = view["actor"]
    player_turn = view["status"] == ACTIVE and any(
        p["id"] == actor and p["kind"] == "player" for p in view["participants"]
    )
    return build_event(
        "combat_state",
        combat_session_id=session_id,
        status=view["status"],
        round=view["round"],
        turn={"actor": actor, "deadline": iso_or_none(deadline) if player_turn else None},
        participants=view["participants"],
    )


def participant_event(session_id: str, user_id: str, event: str) -> dict[str, Any]:
    return build_event("combat_participant", combat_session_id=session_id, user_id=user_id, event=event)


def _effects(session_id: str, events: list[Event], state: CombatState, deadline: datetime | None) -> list[Effect]:
    """The frames of a step's events, in order (see docs/protocol.md, /ws/combat)."""
    effects: list[Effect] = []
    for event in events:
        data = event.data
        if data["kind"] == "action":
            fields = {k: data[k] for k in ("actor", "action", "target", "damage", "target_hp")}
            fields.update({k: data[k] for k in ("critical", "fled") if k in data})
            effects.append(Effect("group", build_event("combat_action_result", combat_session_id=session_id, **fields)))
        elif data["kind"] == "timeout":
            effects.append(
                Effect("group", build_event("combat_timeout", combat_session_id=session_id, actor=data["actor"]))
            )
        elif data["kind"] == "left":
            user_id = data["actor"]
            effects.append(Effect("group", participant_event(session_id, user_id, "left")))
            # Each player gets exactly one combat_end: now, for leaving, or when the fight ends.
            end = build_event("combat_end", combat_session_id=session_id, outcome="fled")
            effects.append(Effect("user", end, user_id=user_id))
            effects.append(Effect("leave", user_id=user_id))
        elif data["kind"] == "end":
            end = build_event("combat_end", combat_session_id=session_id, outcome=data["outcome"])
            effects.extend(Effect("user", end, user_id=p.id) for p in state.players if not p.fled)
            effects.append(Effect("close"))
        if event.view is not None:
            effects.append(Effect("group", state_frame(session_id, event.view, deadline)))
    return effects


# --- database work (one call per operation, run through database_sync_to_async) -----------------


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


def _commit(
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
        effects=_effects(session_id, events, state, deadline),
        players=[p.id for p in state.players],
    )


def _active_session_id(user_id: str) -> str | None:
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


def _party_members(user_id: str) -> list[str]:
    User = get_user_model()
    party_id = User.objects.filter(pk=user_id).values_list("party_id", flat=True).first()
    if party_id is None:
        return []
    return [str(pk) for pk in User.objects.filter(party_id=party_id).exclude(pk=user_id).values_list("pk", flat=True)]


def _start(*, user_id: str, monsters: list[str], member_ids: list[str], seed: int) -> Outcome:
    User = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        current = _active_session_id(user_id)
        if current is not None:
            raise _already_fighting(current)
        session = CombatSession.objects.create(seed=seed, initial_state={}, state={}, created_by_id=user_id)
        try:
            with transaction.atomic():
                CombatParticipant.objects.create(session=session, user_id=user_id, joined_at=now)
        except IntegrityError:
            # A start on another instance won the race; the constraint, not the check above, decides.
            raise _already_fighting(_active_session_id(user_id) or "") from None
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
        outcome = _commit(session, state, engine.begin(state), idle_timeouts=0, now=now)
        assert outcome is not None, "a new session cannot have moved on"
    # The opening combat_state answers the starter; the others get it, then who joined.
    outcome.reply = outcome.effects[0].event
    outcome.effects[1:1] = [Effect("group", participant_event(outcome.session_id, uid, "joined")) for uid in joined]
    return outcome


def _act(*, session_id: str, user_id: str, action: str, target: str | None, round: int | None) -> Outcome:
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
        outcome = _commit(session, state, events, idle_timeouts=0, now=now)
    if outcome is None:
        raise ProtocolError(ErrorCode.NOT_YOUR_TURN, "Another action took this turn first.")
    if late:
        outcome.refusal = ProtocolError(ErrorCode.NOT_YOUR_TURN, "Your turn timed out.")
    else:
        outcome.reply = outcome.effects[0].event  # the caller's combat_action_result
    return outcome


def _mark_disconnected_in(session: CombatSession, user_ids: Iterable[str]) -> list[str]:
    gone = []
    for user_id in user_ids:
        if CombatParticipant.objects.filter(session=session, user_id=user_id, active=True, connected=True).update(
            connected=False
        ):
            _log_participant(session, user_id, "disconnected")
            gone.append(user_id)
    return gone


def _time_out(*, session_id: str, turn: int, connected: set[str] | None) -> tuple[Outcome | None, list[str]]:
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
        outcome = _commit(session, state, events, idle_timeouts=idle, now=now)
        gone: list[str] = []
        if outcome is not None and connected is not None:
            # Catch up on departures nobody announced (a connection lost with its instance).
            players = [p for p in outcome.players if p not in connected]
            gone = _mark_disconnected_in(session, players)
    return outcome, gone


def _due_sessions(*, limit: int) -> list[tuple[str, int, list[str]]]:
    due = list(
        CombatSession.objects.filter(status=ACTIVE, deadline__lte=timezone.now())
        .order_by("deadline")
        .values_list("pk", "turn")[:limit]
    )
    return _with_players(due)


def _due_session(*, session_id: str, turn: int) -> list[tuple[str, int, list[str]]]:
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


def _state_of(*, session_id: str | None, user_id: str) -> dict[str, Any]:
    if session_id is None:
        session_id = _active_session_id(user_id)
        if session_id is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, "You are not in a fight.")
    session = CombatSession.objects.filter(pk=session_id).first()
    if session is None:
        raise ProtocolError(ErrorCode.NOT_FOUND, "No such combat session.", combat_session_id=session_id)
    if not CombatParticipant.objects.filter(session=session, user_id=user_id).exists():
        raise ProtocolError(ErrorCode.FORBIDDEN, "You are not in this fight.", combat_session_id=session_id)
    return state_frame(str(session.pk), engine.view(CombatState.from_json(session.state)), session.deadline)


def _resume(*, user_id: str, session_id: str) -> tuple[dict[str, Any], bool] | None:
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


def _disconnect(*, user_id: str) -> str | None:
    with transaction.atomic():
        participant = CombatParticipant.objects.select_related("session").filter(user_id=user_id, active=True).first()
        if participant is None:
            return None
        gone = _mark_disconnected_in(participant.session, [user_id])
    return str(participant.session_id) if gone else None


def _connected_players() -> list[tuple[str, str]]:
    rows = CombatParticipant.objects.filter(active=True, connected=True).values_list("session_id", "user_id")
    return [(str(s), str(u)) for s, u in rows]


# --- presence -----------------------------------------------------------------------------------


async def _combat_connections(user_id: str) -> int | None:
    """The user's open /ws/combat connections across the cluster; None when presence is down."""
    from realtime.runtime import get_shared_state

    try:
        return (await get_shared_state().user_endpoints(str(user_id))).get("combat", 0)
    except Exception:
        logger.warning("presence unavailable while checking %s", user_id)
        return None


async def _connected_among(user_ids: Iterable[str]) -> set[str] | None:
    connected = set()
    for user_id in user_ids:
        count = await _combat_connections(user_id)
        if count is None:
            return None
        if count:
            connected.add(user_id)
    return connected


# --- publishing and timers ----------------------------------------------------------------------

_timers: dict[str, asyncio.TimerHandle] = {}
_background: set[asyncio.Task] = set()

# The hub filter through which every connection notes the round of the `combat_state` it got.
STATE_SEEN_FILTER = "combat_state_seen"


async def _publish(outcome: Outcome) -> None:
    """Send a committed step's frames in order. The step stands even if a send fails: clients
    recover with `combat_state_request` or by reconnecting."""
    _arm_timer(outcome)
    group = groups.combat_session(outcome.session_id)
    for effect in outcome.effects:
        try:
            if effect.kind == "group" and effect.event["type"] == "combat_state":
                await broadcast_to_channel(
                    group,
                    effect.event,
                    exclude_connection=effect.exclude_connection,
                    filter_name=STATE_SEEN_FILTER,
                    filter_args=[outcome.session_id, effect.event["round"]],
                )
            elif effect.kind == "group":
                await broadcast_to_channel(group, effect.event, exclude_connection=effect.exclude_connection)
            elif effect.kind == "user":
                await send_personal_message(effect.user_id, effect.event)
            elif effect.kind == "leave":
                await send_control(
                    groups.user(effect.user_id), "combat_leave", endpoints=COMBAT, combat_session_id=outcome.session_id
                )
            elif effect.kind == "close":
                await send_control(group, "combat_leave", combat_session_id=outcome.session_id)
        except Exception:
            logger.exception("could not publish a %s of combat %s", effect.kind, outcome.session_id)


def _note_state_seen(conn: Connection, args: Any) -> str:
    """Every member gets a `combat_state`; its connection remembers the round it was shown, the
    round an action sent without `round` is pinned to (see CombatConsumer.on_combat_action)."""
    note = getattr(conn.consumer, "note_combat_state", None)
    if note is not None:
        note(args[0], args[1])
    return "text"


def _arm_timer(outcome: Outcome) -> None:
    """A precise timer on this instance for the turn just started (the sweep is the fallback)."""
    previous = _timers.pop(outcome.session_id, None)
    if previous is not None:
        previous.cancel()
    if outcome.deadline is None:
        return
    delay = max(0.0, (outcome.deadline - timezone.now()).total_seconds()) + TIMER_SLACK_SECONDS
    loop = asyncio.get_running_loop()
    _timers[outcome.session_id] = loop.call_later(delay, _timer_fired, outcome.session_id, outcome.turn)


def _timer_fired(session_id: str, turn: int) -> None:
    _timers.pop(session_id, None)
    _spawn(combat_timeout_fire(session_id=session_id, turn=turn), f"combat timer {session_id}")


def _spawn(coroutine: Any, what: str) -> None:
    async def guarded() -> None:
        try:
            await coroutine
        except Exception:
            logger.exception("%s failed", what)

    task = asyncio.get_running_loop().create_task(guarded())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _fire_due(due: list[tuple[str, int, list[str]]]) -> int:
    fired = 0
    for session_id, turn, players in due:
        connected = await _connected_among(players)
        outcome, gone = await database_sync_to_async(_time_out)(session_id=session_id, turn=turn, connected=connected)
        if outcome is None:
            continue  # acted on, or timed out by another instance, in the meantime
        fired += 1
        group = groups.combat_session(session_id)
        for user_id in gone:
            await broadcast_to_channel(group, participant_event(session_id, user_id, "disconnected"))
        await _publish(outcome)
    return fired


# --- the service API ----------------------------------------------------------------------------


def new_seed() -> int:
    return secrets.randbits(62)


async def combat_session_start(*, user_id: str, monsters: list[str], with_party: bool) -> Outcome:
    """Create a fight (stored, opening monster turns resolved). Nothing is sent yet: the caller
    replies with `outcome.reply`, then calls `combat_session_announce`."""
    unknown = engine.unknown_monsters(monsters)
    if unknown:
        raise ProtocolError(ErrorCode.NOT_FOUND, "Unknown monster.", monster=unknown[0][:32])
    members: list[str] = []
    if with_party:
        # Only party members connected to /ws/combat right now are pulled into the fight.
        party = await database_sync_to_async(_party_members)(user_id)
        members = [m for m in party if await _combat_connections(m)]
    return await database_sync_to_async(_start)(user_id=user_id, monsters=monsters, member_ids=members, seed=new_seed())


async def combat_session_announce(outcome: Outcome, *, runtime: Runtime, exclude_connection: str | None) -> None:
    """Join every participant's /ws/combat connections (any instance) to the session group, wait
    until they are subscribed (or `JOIN_WAIT_SECONDS`), then send the opening frames."""
    counts = [await _combat_connections(uid) for uid in outcome.players]
    expected = sum(c or 0 for c in counts)
    layer = runtime.hub.layer
    reply_to = await layer.new_channel("combat-join.")
    timed_out = False
    try:
        for user_id in outcome.players:
            await send_control(
                groups.user(user_id),
                "combat_join",
                endpoints=COMBAT,
                combat_session_id=outcome.session_id,
                reply_to=reply_to,
            )
        async with asyncio.timeout(JOIN_WAIT_SECONDS):
            for _ in range(expected):
                await layer.receive(reply_to)
    except TimeoutError:
        # A connection on an instance that just died, most likely: go on without it (it will
        # get the state when it reconnects).
        timed_out = True
        logger.info("combat %s: not every connection confirmed joining in time", outcome.session_id)
    finally:
        if not timed_out:
            await _close_reply_channel(layer, reply_to)
    await combat_step_publish(outcome, exclude_connection=exclude_connection)


async def _close_reply_channel(layer: Any, channel: str) -> None:
    """Channels has no "delete channel": a cancelled receive is what makes the Redis layer
    unsubscribe (and the in-memory layer drop the queue)."""
    for _ in range(10):
        task = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0)
        if task.done():
            continue  # a surplus confirmation was waiting; read on
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return


async def combat_action_apply(
    *, session_id: str, user_id: str, action: str, target: str | None, round: int | None
) -> Outcome:
    """Apply a player's action, exactly once per turn (stored, not yet sent: the caller replies
    with `outcome.reply`, then calls `combat_step_publish`)."""
    return await database_sync_to_async(_act)(
        session_id=session_id, user_id=user_id, action=action, target=target, round=round
    )


async def combat_step_publish(outcome: Outcome, *, exclude_connection: str | None = None) -> None:
    """Send a committed step's frames; `exclude_connection` already got the first one as a reply."""
    if exclude_connection is not None and outcome.reply is not None:
        outcome.effects[0] = replace(outcome.effects[0], exclude_connection=exclude_connection)
    await _publish(outcome)
    if outcome.refusal is not None:
        raise outcome.refusal


async def combat_state_get(*, session_id: str | None, user_id: str) -> dict[str, Any]:
    return await database_sync_to_async(_state_of)(session_id=session_id, user_id=user_id)


async def combat_session_of(*, user_id: str) -> str | None:
    """The user's running fight, if any."""
    return await database_sync_to_async(_active_session_id)(user_id)


async def combat_session_resume(*, user_id: str, session_id: str) -> dict[str, Any] | None:
    """A player's connection is back (already in the session group): its `combat_state`, and
    `reconnected` for the others when the player had been announced as disconnected."""
    resumed = await database_sync_to_async(_resume)(user_id=user_id, session_id=session_id)
    if resumed is None:
        return None
    frame, reconnected = resumed
    if reconnected:
        await broadcast_to_channel(
            groups.combat_session(session_id),
            participant_event(session_id, user_id, "reconnected"),
            exclude_user=user_id,
        )
    return frame


async def combat_connection_closed(*, user_id: str, still_counted: bool = False) -> None:
    """A /ws/combat connection closed: announce the player's departure when it was their last one.

    Called after presence forgot the connection (`still_counted` when it could not), so of two
    last connections closing at once on two instances, at least the later one sees none left;
    `_disconnect` is a conditional UPDATE, so the event goes out once even when both do."""
    count = await _combat_connections(user_id)
    if count is None or count > (1 if still_counted else 0):
        return
    session_id = await database_sync_to_async(_disconnect)(user_id=user_id)
    if session_id is not None:
        await broadcast_to_channel(
            groups.combat_session(session_id), participant_event(session_id, user_id, "disconnected")
        )


async def combat_presence_reconcile(instance_id: str | None = None) -> int:
    """After an instance died: announce players whose last /ws/combat connection went with it."""
    announced = 0
    for session_id, user_id in await database_sync_to_async(_connected_players)():
        if await _combat_connections(user_id) != 0:
            continue
        if await database_sync_to_async(_disconnect)(user_id=user_id):
            announced += 1
            await broadcast_to_channel(
                groups.combat_session(session_id), participant_event(session_id, user_id, "disconnected")
            )
    return announced


async def combat_timeout_fire(*, session_id: str, turn: int) -> bool:
    """A local timer: time out `turn` of one session if it is still running."""
    due = await database_sync_to_async(_due_session)(session_id=session_id, turn=turn)
    return bool(due) and await _fire_due(due) > 0


async def combat_timeouts_sweep() -> int:
    """Every instance, periodically: time out every overdue turn (exactly once, by CAS)."""
    due = await database_sync_to_async(_due_sessions)(limit=SWEEP_BATCH)
    return await _fire_due(due) if due else 0


# --- wiring -------------------------------------------------------------------------------------


def install(runtime: Runtime) -> None:
    hub = runtime.hub

    async def join_and_confirm(conn: Connection, message: dict[str, Any]) -> None:
        if not conn.closing:
            await hub.join(conn, [groups.combat_session(message["combat_session_id"])])
        reply_to = message.get("reply_to")
        if reply_to:
            await hub.layer.send(reply_to, {"type": "combat.joined", "connection": conn.id})

    def on_join(conn: Connection, message: dict[str, Any]) -> None:
        _spawn(join_and_confirm(conn, message), "combat join")

    def on_leave(conn: Connection, message: dict[str, Any]) -> None:
        hub.leave(conn, [groups.combat_session(message["combat_session_id"])])

    hub.register_filter(STATE_SEEN_FILTER, _note_state_seen)
    hub.register_control("combat_join", on_join)
    hub.register_control("combat_leave", on_leave)
    runtime.every("combat-timeouts", sweep_interval, combat_timeouts_sweep)
    runtime.on_instance_dead(combat_presence_reconcile)
