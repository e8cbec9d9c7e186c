"""Personal events and offline delivery (docs/protocol.md §9): live to a user's connections, or
kept for an absent user and handed out once on their next connection.

`send_personal(user_id, event)` is the one way a personal event leaves: live when the user has a
connection that carries its type (presence says so), else stored. Exactly-once between
connections comes from an atomic claim (one UPDATE); a frame is marked delivered only after it
was written to the socket, and claims of a connection that died mid-delivery are released (or
expire after `CLAIM_LEASE`) so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from realtime import groups, metrics
from realtime.connection import Connection
from realtime.features.presence import user_reachable
from realtime.hub import Hub
from realtime.layers import EmbeddedChannelLayer, relays_through_outbox
from realtime.models import PendingDelivery
from realtime.outages import service_of
from realtime.outbound import append_relayed, broadcast_to_channel, send_control
from realtime.outbox import BATCH, outbox_take
from realtime.protocol import encode, endpoints_for, now_iso
from realtime.runtime import Runtime
from realtime.transport import OutboundFrame

logger = logging.getLogger(__name__)

# A personal event handed to the server through the outbox (see `send_personal`).
PERSONAL_REQUEST = "rt.personal"

# A claim whose holder vanished without releasing it (instance killed) expires after this.
CLAIM_LEASE = timedelta(seconds=30)


def chat_message_ref(message_id: Any) -> str:
    return f"chat_message:{message_id}"


def pending_store(*, user_id: str, event_type: str, frame: str, endpoints: Iterable[str] | None, ref: str = "") -> int:
    User = get_user_model()
    with transaction.atomic():
        row = PendingDelivery.objects.create(
            user_id=user_id,
            event_type=event_type,
            frame=frame,
            endpoints=",".join(sorted(endpoints)) if endpoints else "",
            ref=ref,
        )
        User.objects.filter(pk=user_id).update(has_pending_deliveries=True)
    return row.id


def pending_claim(*, user_id: str, connection_id: str, endpoint: str) -> list[tuple[int, str]]:
    """Claim every undelivered event this endpoint carries, oldest first."""
    now = timezone.now()
    claimable = PendingDelivery.objects.filter(user_id=user_id, delivered_at__isnull=True).filter(
        Q(claimed_by__isnull=True) | Q(claimed_at__lt=now - CLAIM_LEASE)
    )
    claimable = claimable.filter(Q(endpoints="") | Q(endpoints__contains=endpoint))
    if not claimable.update(claimed_by=connection_id, claimed_at=now):
        _clear_flag_if_done(user_id)
        return []
    return list(
        PendingDelivery.objects.filter(claimed_by=connection_id, delivered_at__isnull=True)
        .order_by("id")
        .values_list("id", "frame")
    )


def pending_withdraw(*, user_id: str, ref: str) -> int:
    """Drop undelivered events about `ref` (the user's pending rows, found through its index)."""
    deleted, _ = PendingDelivery.objects.filter(user_id=user_id, delivered_at__isnull=True, ref=ref).delete()
    return deleted


def pending_mark_delivered(*, user_id: str, connection_id: str, ids: list[int]) -> None:
    PendingDelivery.objects.filter(id__in=ids, claimed_by=connection_id).update(delivered_at=timezone.now())
    _clear_flag_if_done(user_id)


def pending_release(*, connection_id: str) -> int:
    """Give back claims of a connection that closed before it could send them."""
    return PendingDelivery.objects.filter(claimed_by=connection_id, delivered_at__isnull=True).update(
        claimed_by=None, claimed_at=None
    )


def _clear_flag_if_done(user_id: str) -> None:
    User = get_user_model()
    with transaction.atomic():
        # Lock the user row first: a concurrent store sets the flag under the same lock, so we
        # never clear it just after a new event arrived.
        if not User.objects.select_for_update().filter(pk=user_id, has_pending_deliveries=True).exists():
            return
        if not PendingDelivery.objects.filter(user_id=user_id, delivered_at__isnull=True).exists():
            User.objects.filter(pk=user_id).update(has_pending_deliveries=False)


pending_store_async = database_sync_to_async(pending_store)
pending_claim_async = database_sync_to_async(pending_claim)
pending_mark_delivered_async = database_sync_to_async(pending_mark_delivered)
pending_release_async = database_sync_to_async(pending_release)


# --- sending -----------------------------------------------------------------------------------


async def send_personal(user_id: Any, event: dict[str, Any], *, store_if_offline: bool = True, ref: str = "") -> str:
    """Send to every connection of one user; returns "live", "stored" (kept for later), "local"
    (the channel layer refused: only this instance's connections were reached) or "queued"
    (the embedded default, outside the server: handed to the server, which decides).
    `ref` names what a stored event is about, so that it can be withdrawn (`pending_withdraw`)."""
    user_id = str(user_id)
    if "timestamp" not in event:
        event = {**event, "timestamp": now_iso()}
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
    if store_if_offline and not await user_reachable(user_id, endpoints):
        await pending_store_async(
            user_id=user_id, event_type=event["type"], frame=encode(event), endpoints=endpoints, ref=ref
        )
        # A connection may have opened between the check and the store: make it look again.
        if await user_reachable(user_id, endpoints):
            await send_control(groups.user(user_id), "deliver_pending", endpoints=endpoints)
        return "stored"
    metrics.BROADCASTS.labels("personal").inc()
    reached = await broadcast_to_channel(groups.user(user_id), event, endpoints=endpoints)
    return "live" if reached else "local"


# --- delivering to a connection ----------------------------------------------------------------


class OfflineDelivery:
    """Hands kept events to this instance's connections: one delivery at a time per connection,
    claims given back when a connection closes in the middle of one."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._locks: dict[str, asyncio.Lock] = {}
        self._delivering: set[str] = set()

    async def deliver(self, conn: Connection) -> int:
        """Send this user's kept events that the endpoint carries, oldest first, exactly once."""
        user = conn.user
        if user is None or conn.closing:
            return 0
        lock = self._locks.setdefault(conn.id, asyncio.Lock())
        async with lock:
            self._delivering.add(conn.id)
            try:
                claimed = await pending_claim_async(user_id=user.id, connection_id=conn.id, endpoint=conn.endpoint)
                sent = []
                for row_id, text in claimed:
                    if conn.closing:
                        break
                    conn.deliver(OutboundFrame(text))
                    sent.append(row_id)
                if sent:
                    await pending_mark_delivered_async(user_id=user.id, connection_id=conn.id, ids=sent)
                if len(sent) < len(claimed):
                    await pending_release_async(connection_id=conn.id)
                return len(sent)
            except Exception as exc:
                if service_of(exc) is None:
                    raise
                logger.warning("offline delivery to %s postponed: %s unavailable", conn.id, service_of(exc))
                return 0
            finally:
                self._delivering.discard(conn.id)

    async def connection_closed(self, conn: Connection) -> None:
        """Give back the claims of a connection that closed during a delivery."""
        self._locks.pop(conn.id, None)
        if conn.id in self._delivering:
            await pending_release_async(connection_id=conn.id)

    async def hand_over(self) -> int:
        """Deliver events kept while Redis failed (their users were connected here, but the
        sender's instance could not know) to this instance's open connections."""
        user_ids = [user_id for user_id in self.hub.by_user if user_id]
        if not user_ids:
            return 0
        delivered = 0
        for user_id in await database_sync_to_async(_users_with_pending)(user_ids):
            for conn in list(self.hub.user_connections(user_id)):
                if not conn.closing:
                    delivered += await self.deliver(conn)
        if delivered:
            logger.info("handed over %d personal events kept during the outage", delivered)
        return delivered


# Users per query: an instance may hold 20,000, and SQLite limits a query's parameters.
PENDING_CHUNK = 500


def _users_with_pending(user_ids: list[str]) -> list[str]:
    User = get_user_model()
    waiting: list[str] = []
    for start in range(0, len(user_ids), PENDING_CHUNK):
        chunk = User.objects.filter(pk__in=user_ids[start : start + PENDING_CHUNK], has_pending_deliveries=True)
        waiting += [str(pk) for pk in chunk.values_list("pk", flat=True)]
    return waiting


# --- the embedded default's outbox -------------------------------------------------------------


def _outbox_pump(runtime: Runtime, layer: EmbeddedChannelLayer) -> Any:
    """What other processes wrote to the outbox (no Redis): group sends go to this process's
    layer; personal events are decided here, live or kept, since only the server knows."""
    started = datetime.fromtimestamp(runtime.started_at, tz=UTC)

    async def pump() -> None:
        while True:
            batch = await database_sync_to_async(outbox_take)(max_age=layer.expiry, not_before=started)
            for group, message in batch:
                if message.get("type") == PERSONAL_REQUEST:
                    await send_personal(
                        message["user_id"],
                        message["event"],
                        store_if_offline=message["store_if_offline"],
                        ref=message["ref"],
                    )
                elif "stream" in message and "offset" not in message:
                    await append_relayed(message)  # a stream frame: numbered here, by the server
                else:
                    await layer.deliver_local(group, message)
            if len(batch) < BATCH:
                return

    return pump


def install(runtime: Runtime) -> None:
    delivery = OfflineDelivery(runtime.hub)
    runtime.provide(delivery)
    runtime.on_control(
        "deliver_pending", lambda conn, message: runtime.spawn(delivery.deliver(conn), "deliver pending")
    )
    runtime.on_redis_recovered(delivery.hand_over)
    layer = runtime.hub.layer
    if isinstance(layer, EmbeddedChannelLayer):
        runtime.every("outbox", lambda: settings.WEBSOCKET_OUTBOX_POLL_INTERVAL, _outbox_pump(runtime, layer))
