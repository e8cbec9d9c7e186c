"""The one outbound path: every server event, from any feature, the admin or a command, goes here.

- `broadcast_to_channel(group, event)`: everyone in a group, on every instance.
- `send_personal_message(user_id, event)`: every connection of a user (per-user group), stored
  for offline delivery (PROTOCOL §9) when the user has no connection able to receive it.
- `publish(target, message)`: the targets of the HTTP publish API (`user:<uuid>`, `game`, ...).
- `send_control(group, op)`: instructions to connections (close, join/leave groups, ...).

Each has a `_sync` twin for sync code, and `*_on_commit` variants so a rolled-back transaction
sends nothing. An event is encoded to JSON exactly once here; instances never re-encode it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from realtime import groups, metrics
from realtime.hub import CONTROL, EVENT
from realtime.outages import layer_service, outages
from realtime.protocol import encode, endpoints_for, now_iso

logger = logging.getLogger(__name__)

# A PUBLISH takes about a millisecond; two seconds means Redis hangs (frozen, or a network
# partition without resets) or the instance is overloaded. Past it the broadcast is delivered
# to this instance's members at once (see `_group_send`).
LAYER_SEND_TIMEOUT = 2.0
# Sends still running after LAYER_SEND_TIMEOUT, let finish in the background; bounded, so a
# Redis that hangs before the watchdog notices cannot pile up messages without end.
MAX_OUTLIVING = 1000
_outliving: set[asyncio.Future] = set()
# A personal event handed to the server through the outbox (see `send_personal_message`).
PERSONAL_REQUEST = "rt.personal"


class PublishError(ValueError):
    """A publish target or message that cannot be sent (bad target, no `type`)."""


def build_event(event_type: str, **fields: Any) -> dict[str, Any]:
    """A server event frame with its `timestamp` (PROTOCOL §2)."""
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
    from realtime.runtime import current_runtime

    runtime = current_runtime()
    if runtime is not None:
        runtime.hub.dispatch_fallback(message)
    return False


def _outlived(send: asyncio.Future) -> None:
    _outliving.discard(send)
    if not send.cancelled() and send.exception() is not None:
        outages.failed(layer_service(), send.exception())


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
) -> bool:
    """Send `event` to every connection in `group` on every instance.

    `filter_name` picks a receiver-side filter registered on the hub; it may choose, per
    connection, one of `alternatives` (other frames, each encoded once) instead of `event`.
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
    metrics.BROADCASTS.labels("group").inc()
    return await _group_send(group, message)


async def send_personal_message(
    user_id: Any, event: dict[str, Any], *, store_if_offline: bool = True, ref: str = ""
) -> str:
    """Send to every connection of one user; returns "live", "stored" (kept for later), "local"
    (the channel layer refused: only this instance's connections were reached) or "queued"
    (the embedded default, outside the server: handed to the server, which decides).
    `ref` names what a stored event is about, so that it can be withdrawn (offline.pending_withdraw)."""
    from realtime.layers import relays_through_outbox
    from realtime.services import offline, presence

    user_id = str(user_id)
    event = _stamped(event)
    layer = get_channel_layer()
    if relays_through_outbox(layer):
        # The embedded default, outside the server (a shell, a command): this process cannot see
        # who is connected, so the server decides, live or kept, when it takes this from the outbox.
        request = {
            "type": PERSONAL_REQUEST,
            "user_id": user_id,
            "event": event,
            "store_if_offline": store_if_offline,
            "ref": ref,
        }
        await layer.relay_personal(request)
        return "queued"
    endpoints = endpoints_for(event["type"])
    if store_if_offline and not await presence.user_reachable(user_id, endpoints):
        text = encode(event)
        await offline.pending_store_async(
            user_id=user_id, event_type=event["type"], frame=text, endpoints=endpoints, ref=ref
        )
        # A connection may have opened between the check and the store: make it look again.
        if await presence.user_reachable(user_id, endpoints):
            await send_control(groups.user(user_id), "deliver_pending", endpoints=endpoints)
        return "stored"
    metrics.BROADCASTS.labels("personal").inc()
    reached = await broadcast_to_channel(groups.user(user_id), event, endpoints=endpoints)
    return "live" if reached else "local"


async def send_control(group: str, op: str, *, endpoints: frozenset[str] | None = None, **fields: Any) -> bool:
    """An instruction to the connections in `group` (handled by hub control handlers)."""
    message: dict[str, Any] = {"type": CONTROL, "group": group, "op": op, "id": uuid.uuid4().hex, **fields}
    if endpoints is not None:
        message["endpoints"] = sorted(endpoints)
    return await _group_send(group, message)


def resolve_target(target: str, event_type: str = "") -> tuple[str, list[str]]:
    """Map a publish target (PROTOCOL §8) to ("user", [user_id]) or ("group", [group names])."""
    if not isinstance(target, str):
        raise PublishError("target must be a string")
    kind, _, value = target.partition(":")
    simple = {"game": groups.game_all(), "world": groups.world_all(), "chat": groups.chat_global()}
    if kind in simple and not value:
        return "group", [simple[kind]]
    if kind == "user" and value:
        try:
            return "user", [str(uuid.UUID(value))]
        except ValueError as exc:
            raise PublishError("user target needs a UUID: user:<uuid>") from exc
    if kind == "zone" and value:
        if not value.replace("_", "").replace("-", "").isalnum() or len(value) > 64:
            raise PublishError("zone names are letters, digits, '_' and '-'")
        return "group", [groups.zone(value)]
    if kind in ("guild", "party") and value:
        try:
            scope_id = uuid.UUID(value)
        except ValueError as exc:
            raise PublishError(f"{kind} target needs a UUID: {kind}:<uuid>") from exc
        # Members' chat connections for chat types, their game connections for the rest.
        carried = endpoints_for(event_type) or frozenset({"game"})
        endpoints = sorted(carried & {"chat", "game"}) or ["game"]
        return "group", [groups.membership(endpoint, kind, scope_id) for endpoint in endpoints]
    raise PublishError("unknown target; use user:<uuid>, game, world, zone:<name>, guild:<id>, party:<id> or chat")


async def publish(target: str, message: dict[str, Any]) -> str:
    """Publish a whole event frame to a target of the publish API; the server adds `timestamp`.

    Returns "live", "stored" (user target, kept for offline delivery) or "local" (the channel
    layer refused: only connections on this instance were reached)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str) or not message["type"]:
        raise PublishError("message must be an object with a string 'type'")
    kind, names = resolve_target(target, message["type"])
    from realtime.services.published import published_send  # game/world types: checked, routed

    try:
        outcome = await published_send(target=target, kind=kind, names=names, message=message)
    except (ValueError, LookupError) as exc:
        raise PublishError(str(exc)) from exc
    if outcome is not None:
        return outcome
    event = {**message, "timestamp": now_iso()}
    if kind == "user":
        return await send_personal_message(names[0], event)
    return await broadcast_to_groups(names, event)


async def broadcast_to_groups(names: list[str], event: dict[str, Any]) -> str:
    """The same event to several groups: "live", or "local" if the layer refused any of them."""
    reached = True
    for group in names:
        reached &= await broadcast_to_channel(group, event)
    return "live" if reached else "local"


# --- sync twins, for the admin, DRF views and management commands ------------------------------

broadcast_to_channel_sync = async_to_sync(broadcast_to_channel)
send_personal_message_sync = async_to_sync(send_personal_message)
send_control_sync = async_to_sync(send_control)
publish_sync = async_to_sync(publish)


def broadcast_on_commit(group: str, event: dict[str, Any], **options: Any) -> None:
    """Broadcast once the current transaction commits; nothing is sent if it rolls back."""
    transaction.on_commit(lambda: broadcast_to_channel_sync(group, event, **options))


def send_personal_message_on_commit(user_id: Any, event: dict[str, Any], **options: Any) -> None:
    transaction.on_commit(lambda: send_personal_message_sync(user_id, event, **options))


def send_control_on_commit(group: str, op: str, **fields: Any) -> None:
    transaction.on_commit(lambda: send_control_sync(group, op, **fields))
