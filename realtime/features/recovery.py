"""Recovery (docs/protocol.md §12): where each stream of a connection stands, and `resume`.

A connection starts following a stream when it joins the stream's group (at connect, entering a
zone, joining a fight or a guild): the stream's position is read *after* the group is
subscribed, and becomes the connection's floor for it. Live frames at or below the floor are
dropped (they belong to the past the client may resume); a `resume` replays exactly the frames
after the client's offset up to the floor, from the stream log, then lets the live frames that
arrived meanwhile follow in order.

Who may read a stream: `chat:global` any /ws/chat connection, `chat:guild|party:<id>` members
(as the connection knows them), `game` any /ws/game connection, `world:<zone>` any /ws/world
connection for a zone that exists, `combat:<id>` a participant of that fight (also after it
ended, within the retention). A stream of another endpoint is `unknown_stream` here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async

from realtime.connection import Connection
from realtime.features.world.zones import zone_get
from realtime.models import CombatParticipant
from realtime.outages import REDIS, outages
from realtime.protocol import ErrorCode, ProtocolError, now_iso
from realtime.protocol.streams import ResumeIn, StreamName, parse, streams_of
from realtime.streams import Position, get_stream_log

logger = logging.getLogger(__name__)

# The endpoint that carries each kind of stream.
KIND_ENDPOINTS = {"chat": "chat", "game": "game", "world": "world", "combat": "combat"}


def _participated(session_id: str, user_id: str) -> bool:
    return CombatParticipant.objects.filter(session_id=session_id, user_id=user_id).exists()


async def _readable(conn: Connection, stream: StreamName) -> str | None:
    """None if the connection may read `stream`, else the reason it may not."""
    if KIND_ENDPOINTS[stream.kind] != conn.endpoint:
        return "unknown_stream"
    user = conn.user
    if stream.kind == "chat" and stream.key != "global":
        scope, _, scope_id = stream.key.partition(":")
        mine = None if user is None else (user.guild_id if scope == "guild" else user.party_id)
        return None if mine == scope_id else "forbidden"
    if stream.kind == "world":
        return None if await zone_get(stream.key) is not None else "unknown_stream"
    if stream.kind == "combat":
        if user is None:
            return "forbidden"
        allowed = await database_sync_to_async(_participated)(stream.key, user.id)
        return None if allowed else "forbidden"
    return None


def resume_window_over(conn: Connection) -> None:
    """`WEBSOCKET_RESUME_WINDOW` after `connection_established`: a client that has sent nothing
    yet will not resume first; its stream frames go out. (One that has sent a frame, still
    waiting to be handled, is released by it, or by the replay if it is a `resume`.)"""
    if conn.frames_in == 0:
        conn.release_held()


async def follow(conn: Connection, streams: Iterable[str]) -> dict[str, Position]:
    """The connection now receives these streams (its groups are subscribed): read where they
    stand and make that its floor. Returns the positions ({} when the log cannot be read: the
    frames then simply carry their positions, and a later resume may say `too_old`)."""
    names = [name for name in streams if name not in (conn.floors or {})]
    if not names:
        return {}
    try:
        positions = await get_stream_log().positions(names)
    except Exception as exc:
        outages.failed(REDIS, exc)
        return {}
    conn.set_floors({name: position.offset for name, position in positions.items()})
    return positions


async def follow_groups(conn: Connection, groups: Iterable[str]) -> dict[str, Position]:
    """`follow` for the streams of groups the connection just joined."""
    return await follow(conn, streams_of(groups))


async def resume(conn: Connection, message: ResumeIn) -> dict[str, Any]:
    """Replay what the client missed of each stream it names; returns the `resumed` reply.

    Live frames of these streams are held while the replay runs and follow it: no gap, no
    duplicate. Raises ProtocolError when the log cannot be read at all (`unavailable`).
    """
    results: dict[str, Any] = {}
    log = get_stream_log()
    conn.hold_streams()
    try:
        for name, seen in message.streams.items():
            stream = parse(name)
            reason = "unknown_stream" if stream is None else await _readable(conn, stream)
            if stream is None or reason is not None:
                # A stream this connection may not read tells nothing of itself, not even its size.
                results[name] = {"recovered": False, "reason": reason, "offset": 0, "epoch": ""}
                continue
            floor = (conn.floors or {}).get(name)
            try:
                kept = await log.kept(name, after=seen.offset, upto=floor)
            except Exception as exc:
                outages.failed(REDIS, exc)
                raise ProtocolError(ErrorCode.UNAVAILABLE, "Recovery is unavailable; try again shortly.") from exc
            now = kept.position.as_wire()
            if kept.position.epoch != seen.epoch or seen.offset > kept.position.offset:
                results[name] = {"recovered": False, "reason": "epoch_changed", **now}
            elif kept.frames is None:
                results[name] = {"recovered": False, "reason": "too_old", **now}
            else:
                for _offset, text in kept.frames:
                    conn.replay(text)
                results[name] = {"recovered": True, "missed": len(kept.frames), **now}
    finally:
        conn.release_held()
    return {"type": "resumed", "streams": results, "timestamp": now_iso()}
