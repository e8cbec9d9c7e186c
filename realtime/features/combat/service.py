"""Combat sessions (docs/protocol.md §6): what the consumer calls, and how a committed step goes out.

The referee (`referee.py`) stores every step; this module sends its frames, only after the
commit and in step order, to the session group that the participants' /ws/combat connections
join on every instance, and keeps the turn timers (`timers.py`) and the rounds this instance has
shown. A fight nobody is connected to ends by itself after `referee.ABANDON_AFTER_TIMEOUTS`
consecutive timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.conf import settings

from realtime import groups, metrics
from realtime.connection import Connection
from realtime.features.combat import engine, referee
from realtime.features.combat.frames import participant_event
from realtime.features.combat.referee import Outcome
from realtime.features.combat.timers import SWEEP_BATCH, TurnTimers, sweep_interval
from realtime.features.offline import send_personal
from realtime.features.presence import endpoint_connections
from realtime.outages import REDIS, outages
from realtime.outbound import broadcast_to_channel, broadcast_to_stream, send_control
from realtime.protocol import ErrorCode, ProtocolError, encode, streams
from realtime.runtime import Runtime, current_runtime
from realtime.store import get_store

logger = logging.getLogger(__name__)

COMBAT = frozenset({"combat"})
# How long a start waits for the participants' connections to join the session group before it
# sends the first frames (their instances subscribe to the group; normally a few milliseconds).
JOIN_WAIT_SECONDS = 2.0
# COMBAT_START_RATE_LIMIT counts fights started per user in windows of this length.
START_RATE_WINDOW_SECONDS = 60.0
# The hub observer that notes the round of every `combat_state` shown on this instance.
ROUNDS_OBSERVER = "combat_rounds"


@dataclass(frozen=True, slots=True)
class Reply:
    """Where the first frame of a step goes as a direct reply: the asking connection, the id."""

    connection: Connection
    frame_id: Any
    rounds: RoundsShown

    def send(self, text: str) -> None:
        state = orjson.loads(text)
        if state.get("type") == "combat_state":
            self.rounds.note(state["combat_session_id"], state["round"], over=state["status"] != "active")
        self.connection.reply_text(text, self.frame_id)


class RoundsShown:
    """The round of the last `combat_state` this instance showed each fight's connections.

    An action sent without `round` is pinned to it: a copy of the action sent from a second
    device cannot land on the player's next turn after the first copy took this one.
    """

    def __init__(self) -> None:
        self._rounds: dict[str, int] = {}

    def get(self, session_id: str) -> int | None:
        return self._rounds.get(session_id)

    def note(self, session_id: str, round: int, *, over: bool = False) -> None:
        if over:
            self._rounds.pop(session_id, None)
        else:
            self._rounds[session_id] = round

    def observe(self, message: dict[str, Any]) -> None:
        """Hub observer: a `combat_state` broadcast reached this instance (read from the frame)."""
        state = orjson.loads(message["text"])
        self.note(state["combat_session_id"], state["round"], over=state["status"] != "active")


# --- presence -----------------------------------------------------------------------------------


async def _combat_connections(user_id: str) -> int | None:
    """The user's open /ws/combat connections across the cluster; None when presence is down."""
    return await endpoint_connections(user_id, "combat")


async def _connected_among(user_ids: Iterable[str]) -> set[str] | None:
    connected = set()
    for user_id in user_ids:
        count = await _combat_connections(user_id)
        if count is None:
            return None
        if count:
            connected.add(user_id)
    return connected


async def _within_start_limit(user_id: str) -> bool:
    """`COMBAT_START_RATE_LIMIT` fights per user per minute, across connections and instances."""
    limit = settings.COMBAT_START_RATE_LIMIT
    if limit <= 0:
        return True
    try:
        return await get_store().hit(f"combat-start:{user_id}", limit, START_RATE_WINDOW_SECONDS)
    except Exception as exc:  # fail open: a fight still needs the database, which limits it too
        outages.failed(REDIS, exc)
        return True


# --- publishing ---------------------------------------------------------------------------------


async def _publish(outcome: Outcome, reply: Callable[[str], None] | None = None) -> None:
    """Send a committed step's frames in order; the fight's frames are its stream
    (docs/protocol.md §12). `reply(text)` gets the first frame as sent (with its position), for
    the connection that asked, which the broadcast leaves out. The step stands even if a send
    fails: clients recover with `resume`, `combat_state_request` or by reconnecting."""
    runtime = current_runtime()
    if runtime is not None:
        runtime.get(TurnTimers).arm(outcome.session_id, outcome.turn, outcome.deadline)
    group = groups.combat_session(outcome.session_id)
    stream = streams.combat(outcome.session_id)
    for index, effect in enumerate(outcome.effects):
        try:
            if effect.kind == "group" and effect.event is not None:
                sent = await broadcast_to_stream(
                    stream,
                    group,
                    effect.event,
                    exclude_connection=effect.exclude_connection,
                    observe=ROUNDS_OBSERVER if effect.event["type"] == "combat_state" else None,
                )
                if index == 0 and reply is not None:
                    reply(sent.frame.text if sent.frame is not None else encode(effect.event))
            elif effect.kind == "user" and effect.event is not None:
                await send_personal(effect.user_id, effect.event)
            elif effect.kind == "leave":
                await send_control(
                    groups.user(effect.user_id), "combat_leave", endpoints=COMBAT, combat_session_id=outcome.session_id
                )
            elif effect.kind == "close":
                await send_control(group, "combat_leave", combat_session_id=outcome.session_id)
        except Exception:
            logger.exception("could not publish a %s of combat %s", effect.kind, outcome.session_id)


async def _fire_due(due: list[tuple[str, int, list[str]]]) -> int:
    fired = 0
    for session_id, turn, players in due:
        connected = await _connected_among(players)
        outcome, gone = await database_sync_to_async(referee.time_out)(
            session_id=session_id, turn=turn, connected=connected
        )
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
    if not await _within_start_limit(user_id):
        metrics.RATE_LIMITED.labels("combat", "combat_start").inc()
        raise ProtocolError(
            ErrorCode.RATE_LIMITED,
            "Too many fights started; wait a little.",
            limit=settings.COMBAT_START_RATE_LIMIT,
            window_seconds=int(START_RATE_WINDOW_SECONDS),
        )
    members: list[str] = []
    if with_party:
        # Only party members connected to /ws/combat right now are pulled into the fight.
        party = await database_sync_to_async(referee.party_members)(user_id)
        members = [m for m in party if await _combat_connections(m)]
    return await database_sync_to_async(referee.start)(
        user_id=user_id, monsters=monsters, member_ids=members, seed=new_seed()
    )


async def combat_session_announce(outcome: Outcome, *, runtime: Runtime, reply_to: Reply | None) -> None:
    """Join every participant's /ws/combat connections (any instance) to the session group, wait
    until they are subscribed (or `JOIN_WAIT_SECONDS`), then send the opening frames; the
    starter's connection (`reply_to`) gets the opening state as its reply."""
    counts = [await _combat_connections(uid) for uid in outcome.players]
    expected = sum(c or 0 for c in counts)
    layer = runtime.hub.layer
    reply_channel = await layer.new_channel("combat-join.")
    timed_out = False
    try:
        for user_id in outcome.players:
            await send_control(
                groups.user(user_id),
                "combat_join",
                endpoints=COMBAT,
                combat_session_id=outcome.session_id,
                reply_to=reply_channel,
            )
        async with asyncio.timeout(JOIN_WAIT_SECONDS):
            for _ in range(expected):
                await layer.receive(reply_channel)
    except TimeoutError:
        # A connection on an instance that just died, most likely: go on without it (it will
        # get the state when it reconnects).
        timed_out = True
        logger.info("combat %s: not every connection confirmed joining in time", outcome.session_id)
    finally:
        if not timed_out:
            await _close_reply_channel(layer, reply_channel)
    await combat_step_publish(outcome, reply_to=reply_to)


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
    return await database_sync_to_async(referee.act)(
        session_id=session_id, user_id=user_id, action=action, target=target, round=round
    )


async def combat_step_publish(outcome: Outcome, *, reply_to: Reply | None = None) -> None:
    """Send a committed step's frames; the connection that asked (`reply_to`) gets the first one
    as its reply, with the client's `id`, and is left out of its broadcast."""
    reply = None
    if reply_to is not None and outcome.reply is not None:
        outcome.effects[0] = replace(outcome.effects[0], exclude_connection=reply_to.connection.id)
        reply = reply_to.send
    await _publish(outcome, reply)
    if outcome.refusal is not None:
        raise outcome.refusal


async def combat_state_get(*, session_id: str | None, user_id: str) -> dict[str, Any]:
    return await database_sync_to_async(referee.state_of)(session_id=session_id, user_id=user_id)


async def combat_session_of(*, user_id: str) -> str | None:
    """The user's running fight, if any."""
    return await database_sync_to_async(referee.active_session_id)(user_id)


async def combat_session_resume(*, user_id: str, session_id: str) -> dict[str, Any] | None:
    """A player's connection is back (already in the session group): its `combat_state`, and
    `reconnected` for the others when the player had been announced as disconnected."""
    resumed = await database_sync_to_async(referee.resume)(user_id=user_id, session_id=session_id)
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
    `referee.disconnect` is a conditional UPDATE, so the event goes out once even when both do."""
    count = await _combat_connections(user_id)
    if count is None or count > (1 if still_counted else 0):
        return
    session_id = await database_sync_to_async(referee.disconnect)(user_id=user_id)
    if session_id is not None:
        await broadcast_to_channel(
            groups.combat_session(session_id), participant_event(session_id, user_id, "disconnected")
        )


async def combat_presence_reconcile(instance_id: str | None = None) -> int:
    """After an instance died: announce players whose last /ws/combat connection went with it."""
    announced = 0
    for session_id, user_id in await database_sync_to_async(referee.connected_players)():
        if await _combat_connections(user_id) != 0:
            continue
        if await database_sync_to_async(referee.disconnect)(user_id=user_id):
            announced += 1
            await broadcast_to_channel(
                groups.combat_session(session_id), participant_event(session_id, user_id, "disconnected")
            )
    return announced


async def combat_timeout_fire(*, session_id: str, turn: int) -> bool:
    """A local timer: time out `turn` of one session if it is still running."""
    due = await database_sync_to_async(referee.due_session)(session_id=session_id, turn=turn)
    return bool(due) and await _fire_due(due) > 0


async def combat_timeouts_sweep() -> int:
    """Every instance, periodically: time out every overdue turn (exactly once, by CAS)."""
    due = await database_sync_to_async(referee.due_sessions)(limit=SWEEP_BATCH)
    return await _fire_due(due) if due else 0


# --- wiring -------------------------------------------------------------------------------------


def install(runtime: Runtime) -> None:
    hub = runtime.hub
    rounds = RoundsShown()
    runtime.provide(rounds)
    runtime.provide(
        TurnTimers(
            fire=lambda session_id, turn: combat_timeout_fire(session_id=session_id, turn=turn), spawn=runtime.spawn
        )
    )

    async def join_and_confirm(conn: Connection, message: dict[str, Any]) -> None:
        if not conn.closing:
            session_id = message["combat_session_id"]
            await hub.join(conn, [groups.combat_session(session_id)])
            conn.set_floors({streams.combat(session_id): 0})  # a new fight: from its first frame
        reply_to = message.get("reply_to")
        if reply_to:
            await hub.layer.send(reply_to, {"type": "combat.joined", "connection": conn.id})

    hub.register_observer(ROUNDS_OBSERVER, rounds.observe)
    runtime.on_control(
        "combat_join", lambda conn, message: runtime.spawn(join_and_confirm(conn, message), "combat join")
    )
    runtime.on_control(
        "combat_leave", lambda conn, message: hub.leave(conn, [groups.combat_session(message["combat_session_id"])])
    )
    runtime.every("combat-timeouts", sweep_interval, combat_timeouts_sweep)
    runtime.on_instance_dead(combat_presence_reconcile)
