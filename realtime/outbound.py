"""The one outbound path: every server event, from any feature, the admin or a command, goes here.

- `broadcast_to_channel(group, event)`: everyone in a group, on every instance.
- `broadcast_to_stream(stream, group, event)`: the same, as the next frame of a recoverable stream.
- `broadcast_to_groups(groups, event)`: the same event to several groups.
- `send_control(group, op)`: instructions to connections (close, join/leave groups, ...).

It only sends: who is online, what is kept for later (`features/offline.py`) and where a
published event goes (`features/publish.py`) are decided above it. Each function has a `_sync`
twin for sync code, and `*_on_commit` variants so a rolled-back transaction sends nothing. An
event is encoded to JSON exactly once here; instances never re-encode it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from realtime import metrics
from realtime.hub import CONTROL, EVENT, local_hub
from realtime.layers import relays_through_outbox
from realtime.outages import layer_service, outages
from realtime.protocol import encode, now_iso
from realtime.streams import Appended, get_stream_log

logger = logging.getLogger(__name__)

# A PUBLISH takes about a millisecond; two seconds means Redis hangs (frozen, or a network
# partition without resets) or the instance is overloaded. Past it the broadcast is delivered
# to this instance's members at once (see `_group_send`).
LAYER_SEND_TIMEOUT = 2.0
# Sends still running after LAYER_SEND_TIMEOUT, let finish in the background; bounded, so a
# Redis that hangs before the watchdog notices cannot pile up messages without end.
MAX_OUTLIVING = 1000
_outliving: set[asyncio.Future] = set()


@dataclass(frozen=True, slots=True)
class StreamSend:
    """What became of a stream frame: `reached` every instance (False: only this one), and the
    frame as sent with its position (None when it went out without one, or through the outbox)."""

    reached: bool
    frame: Appended | None


def build_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """A server event frame with its `timestamp` (docs/protocol.md §2)."""
    return {"type": event_type, **fields, "timestamp": now_iso()}


def _stamped(event: dict[str, Any]) -> dict[str, Any]:
    if "timestamp" not in event:
        event = {**event, "timestamp": now_iso()}
    return event


async def _group_send(group: str, message: dict[str, Any]) -> bool:
    """Hand a message to the channel layer; if the layer fails or is slow, still reach local members.

    The wait is bounded: a PUBLISH to a frozen Redis never returns, and every later broadcast of
    the process queues behind it (channels-redis sends one at a time). Past the bound the
    message is delivered to this instance's members at once. The send itself goes on in the
    background unless Redis is known to be down: a PUBLISH that is only queued (an overloaded
    instance) then reaches the other instances late rather than never, and the hub drops the
    copy that comes back to this instance.
    """
    send = asyncio.ensure_future(get_channel_layer().group_send(group, message))
    try:
        await asyncio.wait_for(asyncio.shield(send), LAYER_SEND_TIMEOUT)
        return True
    except TimeoutError:
        if outages.down(layer_service()) or len(_outliving) >= MAX_OUTLIVING:
            send.cancel()  # lost for the other instances: live broadcasts are at most once
        else:
            _outliving.add(send)
            send.add_done_callback(_outlived)
        logger.debug("broadcast to %s not confirmed in time; delivered locally", group)
    except Exception as exc:
        outages.failed(layer_service(), exc)
    metrics.BROADCAST_FAILURES.inc()
    hub = local_hub()
    if hub is not None:
        hub.dispatch_fallback(message)
    return False


def _outlived(send: asyncio.Future) -> None:
    _outliving.discard(send)
    error = None if send.cancelled() else send.exception()
    if error is not None:
        outages.failed(layer_service(), error)


async def broadcast_to_channel(
    group: str,
    event: dict[str, Any],
    *,
    exclude_user: str | None = None,
    exclude_connection: str | None = None,
    endpoints: frozenset[str] | None = None,
    filter_name: str | None = None,
    filter_args: Any = None,
    alternatives: dict[str, dict[str, Any]] | None = None,
    observe: str | None = None,
    observe_args: Any = None,
) -> bool:
    """Send `event` to every connection in `group` on every instance.

    `filter_name` picks a receiver-side filter registered on the hub; it may choose, per
    connection, one of `alternatives` (other frames, each encoded once) instead of `event`.
    `observe` names a hub observer told of the broadcast on each instance it reaches.
    """
    event = _stamped(event)
    message: dict[str, Any] = {
        "type": EVENT,
        "group": group,
        "text": encode(event),
        "event_type": event["type"],
        "sent_at": time.time(),
    }
    if exclude_user is not None:
        message["exclude_user"] = str(exclude_user)
    if exclude_connection is not None:
        message["exclude_connection"] = exclude_connection
    if endpoints is not None:
        message["endpoints"] = sorted(endpoints)
    if filter_name is not None:
        message["filter"] = filter_name
        message["filter_args"] = filter_args
        for key, alternative in (alternatives or {}).items():
            message[key] = encode(_stamped(alternative))
    if observe is not None:
        message["observe"] = observe
        message["observe_args"] = observe_args
    metrics.BROADCASTS.labels("group").inc()
    return await _group_send(group, message)


async def broadcast_to_stream(
    stream: str,
    group: str,
    event: dict[str, Any],
    *,
    exclude_connection: str | None = None,
    observe: str | None = None,
) -> StreamSend:
    """Send `event` to `group` as the next frame of a recoverable stream (docs/protocol.md §12):
    the stream log gives it its offset, keeps it and publishes it in one step, so every instance
    sees the stream's frames in offset order. When the log cannot take it, the frame goes out
    without a position, at most once, like any broadcast during an outage (a client that
    resumes later is told what it cannot recover)."""
    event = _stamped(event)
    text = encode(event)
    message: dict[str, Any] = {"type": EVENT, "group": group, "text": text, "event_type": event["type"]}
    message["sent_at"] = time.time()
    if exclude_connection is not None:
        message["exclude_connection"] = exclude_connection
    if observe is not None:
        message["observe"] = observe
    layer = get_channel_layer()
    if relays_through_outbox(layer):
        # A command's process in the embedded default: the server numbers it when it takes it.
        return StreamSend(reached=await _group_send(group, {**message, "stream": stream}), frame=None)
    metrics.BROADCASTS.labels("stream").inc()
    try:
        appended = await asyncio.wait_for(
            get_stream_log().append(stream=stream, group=group, text=text, message=message), LAYER_SEND_TIMEOUT
        )
        return StreamSend(reached=True, frame=appended)
    except Exception as exc:
        outages.failed(layer_service(), exc)
    metrics.BROADCAST_FAILURES.inc()
    hub = local_hub()
    if hub is not None:
        hub.dispatch_fallback(message)
    return StreamSend(reached=False, frame=None)


async def append_relayed(message: dict[str, Any]) -> None:
    """The server's side of `broadcast_to_stream` from another process (embedded default)."""
    stream, group = message.pop("stream"), message["group"]
    await get_stream_log().append(stream=stream, group=group, text=message["text"], message=message)


async def send_control(group: str, op: str, *, endpoints: frozenset[str] | None = None, **fields: Any) -> bool:
    """An instruction to the connections in `group` (handled by hub control handlers)."""
    message: dict[str, Any] = {"type": CONTROL, "group": group, "op": op, "id": uuid.uuid4().hex, **fields}
    if endpoints is not None:
        message["endpoints"] = sorted(endpoints)
    return await _group_send(group, message)


async def broadcast_to_groups(names: list[str], event: dict[str, Any]) -> str:
    """The same event to several groups: "live", or "local" if the layer refused any of them."""
    reached = True
    for group in names:
        reached &= await broadcast_to_channel(group, event)
    return "live" if reached else "local"


# --- sync twins, for the admin, DRF views and management commands ------------------------------

broadcast_to_channel_sync = async_to_sync(broadcast_to_channel)
send_control_sync = async_to_sync(send_control)


def broadcast_on_commit(group: str, event: dict[str, Any], **options: Any) -> None:
    """Broadcast once the current transaction commits; nothing is sent if it rolls back."""
    transaction.on_commit(lambda: broadcast_to_channel_sync(group, event, **options))


def send_control_on_commit(group: str, op: str, **fields: Any) -> None:
    transaction.on_commit(lambda: send_control_sync(group, op, **fields))
