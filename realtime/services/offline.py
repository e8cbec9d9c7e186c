"""Offline delivery (PROTOCOL §9): keep personal events for absent users, hand each out once.

Exactly-once between connections comes from an atomic claim (one UPDATE); a frame is marked
delivered only after it was written to the socket, and claims of a connection that died
mid-delivery are released (or expire after `CLAIM_LEASE`) so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from realtime.models import PendingDelivery

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


def pending_prune(*, older_than: timedelta) -> int:
    """Delete delivered rows older than `older_than` (they are kept a while for support)."""
    cutoff = timezone.now() - older_than
    deleted, _ = PendingDelivery.objects.filter(delivered_at__lt=cutoff).delete()
    return deleted


pending_store_async = database_sync_to_async(pending_store)
pending_claim_async = database_sync_to_async(pending_claim)
pending_mark_delivered_async = database_sync_to_async(pending_mark_delivered)
pending_release_async = database_sync_to_async(pending_release)
