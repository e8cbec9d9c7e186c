"""The database outbox of the embedded default (no Redis): sends from other processes.

Without Redis the channel layer is in memory, inside the one server process. A management
command or a shell is another process, so its group sends are written here instead, and the
server polls this table (only in that configuration) and hands each message to its own layer.
Messages older than the layer's expiry are dropped, as the layer itself would drop them, and so
are messages written while the server was not running: a broadcast is for the connections that
exist when it is sent, not for those that open later. Personal events are `durable`: the server
takes them whenever it runs and delivers them live or keeps them for the user (§9).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from realtime.models import OutboxMessage

BATCH = 500


def outbox_put(*, group: str, message: dict[str, Any], durable: bool = False) -> int:
    return OutboxMessage.objects.create(group=group, message=orjson.dumps(message).decode(), durable=durable).id


def outbox_take(
    *, max_age: float, not_before: datetime | None = None, limit: int = BATCH
) -> list[tuple[str, dict[str, Any]]]:
    """Remove and return the oldest waiting messages (one query when there are none).

    Messages older than `max_age` seconds or written before `not_before` (the server's start:
    they were meant for connections that existed then) are removed without being returned.
    """
    rows = list(
        OutboxMessage.objects.order_by("id").values_list("id", "group", "message", "created_at", "durable")[:limit]
    )
    if not rows:
        return []
    cutoff = timezone.now() - timedelta(seconds=max_age)
    if not_before is not None:
        cutoff = max(cutoff, not_before)
    with transaction.atomic():
        OutboxMessage.objects.filter(id__in=[row[0] for row in rows]).delete()
        OutboxMessage.objects.filter(created_at__lt=cutoff, durable=False).delete()
    return [
        (group, orjson.loads(message))
        for _, group, message, created_at, durable in rows
        if durable or created_at >= cutoff
    ]


def outbox_pending() -> int:
    return OutboxMessage.objects.count()
