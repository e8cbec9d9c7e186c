"""Operator actions: disconnect connections anywhere, clean up after dead instances.

The admin and the management commands call these; every send goes through
`realtime/outbound.py`, so an action taken on any process reaches every instance.
Announcements are the game API's (`features/game.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings

from realtime import groups
from realtime.models import Connection, Instance
from realtime.outbound import send_control
from realtime.protocol import CloseCode, ErrorCode
from realtime.registry import find_dead_instances
from realtime.runtime import Runtime
from realtime.store import get_store

logger = logging.getLogger(__name__)

T = TypeVar("T")

DISCONNECT_BATCH = 500  # connection ids per control message
# Sync callers (admin, commands) wait at most this long for the layer: Redis may hang.
OPERATION_TIMEOUT = 5.0


def run_bounded(action: Callable[..., Awaitable[T]], /, timeout: float | None = None, **kwargs: Any) -> T:
    """Run an async operator action from sync code (admin, commands); TimeoutError past
    `timeout` (default OPERATION_TIMEOUT)."""
    limit = OPERATION_TIMEOUT if timeout is None else timeout

    async def bounded() -> T:
        return await asyncio.wait_for(action(**kwargs), limit)

    return async_to_sync(bounded)()


# --- disconnect ----------------------------------------------------------------------------


async def connections_disconnect(*, connection_ids: Iterable[str], reconnect: bool = False) -> bool:
    """Close connections by id on whichever instance holds them (anonymous ones included).

    `reconnect=False` is a kick: `error` `kicked`, close 4403 (clients do not retry on their own).
    `reconnect=True` closes with 1001, which clients treat as "reconnect" — to move load to
    other instances. Returns False when the channel layer refused (only this process was reached).
    """
    ids = list(dict.fromkeys(str(conn_id) for conn_id in connection_ids))
    close: dict[str, Any]
    if reconnect:
        close = {"code": int(CloseCode.GOING_AWAY)}
    else:
        close = {
            "code": int(CloseCode.FORBIDDEN),
            "error_code": str(ErrorCode.KICKED),
            "message": "Disconnected by an administrator.",
        }
    reached = True
    for start in range(0, len(ids), DISCONNECT_BATCH):
        batch = ids[start : start + DISCONNECT_BATCH]
        reached &= await send_control(groups.instances(), "close", connections=batch, **close)
    return reached


# --- cleanup after dead instances ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadInstance:
    id: str
    connections: int  # registry rows
    presence: int | None  # presence entries in the shared state; None when not visible from here
    reason: str


def _registry_view(cleanup_interval: float) -> tuple[list[str], set[str], dict[str, int]]:
    dead = find_dead_instances(cleanup_interval)
    known = set(Instance.objects.values_list("id", flat=True))
    rows = {instance_id: Connection.objects.filter(instance_id=instance_id).count() for instance_id in dead}
    return dead, known, rows


async def dead_instances_find() -> list[DeadInstance]:
    """Instances that stopped refreshing, connection rows without an instance, and presence
    held by instances the registry does not know (e.g. after their rows were deleted by hand)."""
    dead, known, rows = await database_sync_to_async(_registry_view)(settings.WEBSOCKET_CLEANUP_INTERVAL)
    presence: dict[str, int] | None = None
    if settings.REDIS is not None:  # in memory, presence lives inside the server process only
        presence = await get_store().presence_instances()
    found = []
    for instance_id in dead:
        found.append(
            DeadInstance(
                instance_id,
                rows[instance_id],
                presence.get(instance_id, 0) if presence is not None else None,
                "stopped refreshing" if instance_id in known else "connection rows without an instance",
            )
        )
    for instance_id, entries in sorted((presence or {}).items()):
        if instance_id not in known and instance_id not in rows:
            found.append(DeadInstance(instance_id, 0, entries, "presence without an instance"))
    return found


async def dead_instances_cleanup(*, runtime: Runtime, dry_run: bool = False) -> list[DeadInstance]:
    """Find dead instances and (unless `dry_run`) forget them exactly as a surviving instance
    would (`Runtime.forget_instance`); `runtime` carries the features' hooks."""
    found = await dead_instances_find()
    if dry_run or not found:
        return found
    for dead in found:
        logger.warning("removing records of dead instance %s (%s)", dead.id, dead.reason)
        await runtime.forget_instance(dead.id)
    return found
