"""Operator actions: disconnect connections anywhere, announce, clean up after dead instances.

The admin, the management commands and the publish API call these; every send goes through
`realtime/events.py`, so an action taken on any process reaches every instance.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from realtime import events, groups
from realtime.models import Connection, Instance
from realtime.protocol import CloseCode, ErrorCode
from realtime.registry import find_dead_instances

if TYPE_CHECKING:
    from realtime.runtime import Runtime

logger = logging.getLogger(__name__)

T = TypeVar("T")

ANNOUNCEMENT_LEVELS = ("info", "warning", "critical")
MAX_ANNOUNCEMENT_LENGTH = 1000
DISCONNECT_BATCH = 500  # connection ids per control message
# Sync callers (admin, commands) wait at most this long for the layer: Redis may hang.
OPERATION_TIMEOUT = 5.0


class OperationError(ValueError):
    """Input an operator action refuses (empty announcement, unknown level)."""


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
        reached &= await events.send_control(groups.instances(), "close", connections=batch, **close)
    return reached


# --- announcements -------------------------------------------------------------------------


def announcement_build(*, message: str, level: str = "info") -> dict:
    text = (message or "").strip()
    if not text:
        raise OperationError("The announcement is empty.")
    if len(text) > MAX_ANNOUNCEMENT_LENGTH:
        raise OperationError(f"Announcements are at most {MAX_ANNOUNCEMENT_LENGTH} characters.")
    if level not in ANNOUNCEMENT_LEVELS:
        raise OperationError(f"level must be one of {', '.join(ANNOUNCEMENT_LEVELS)}.")
    return events.build_event("system_announcement", message=text, level=level)


async def announcement_send(*, message: str, level: str = "info") -> bool:
    """`system_announcement` to every /ws/game connection on every instance (PROTOCOL §4)."""
    event = announcement_build(message=message, level=level)
    return await events.broadcast_to_channel(groups.game_all(), event)


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
    from realtime.runtime import get_shared_state

    dead, known, rows = await database_sync_to_async(_registry_view)(settings.WEBSOCKET_CLEANUP_INTERVAL)
    presence: dict[str, int] | None = None
    if settings.REDIS is not None:  # in memory, presence lives inside the server process only
        presence = await get_shared_state().presence_instances()
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


def cleanup_runtime() -> Runtime:
    """A runtime that is never started: it carries the shared state and the features' hooks,
    so a command runs exactly the cleanup a surviving instance would."""
    from realtime.features import install_features
    from realtime.runtime import Runtime, get_shared_state

    runtime = Runtime(instance_id=f"cleanup-{os.getpid()}", layer=get_channel_layer(), state=get_shared_state())
    install_features(runtime)
    return runtime


async def dead_instances_cleanup(*, dry_run: bool = False) -> list[DeadInstance]:
    """Find dead instances and (unless `dry_run`) forget them as housekeeping would."""
    from realtime.housekeeping import forget_instance

    found = await dead_instances_find()
    if dry_run or not found:
        return found
    runtime = cleanup_runtime()
    for dead in found:
        logger.warning("removing records of dead instance %s (%s)", dead.id, dead.reason)
        await forget_instance(runtime, dead.id)
    return found


# --- wiring ----------------------------------------------------------------------------------


def install(runtime: Runtime) -> None:
    """Embedded default only: deliver what other processes wrote to the outbox."""
    from realtime.layers import EmbeddedChannelLayer
    from realtime.services.outbox import BATCH, outbox_take

    layer = runtime.hub.layer
    if not isinstance(layer, EmbeddedChannelLayer):
        return
    started = datetime.fromtimestamp(runtime.started_at, tz=UTC)

    async def deliver_outbox() -> None:
        while True:
            batch = await database_sync_to_async(outbox_take)(max_age=layer.expiry, not_before=started)
            for group, message in batch:
                if message.get("type") == events.PERSONAL_REQUEST:
                    await events.send_personal_message(
                        message["user_id"],
                        message["event"],
                        store_if_offline=message["store_if_offline"],
                        ref=message["ref"],
                    )
                else:
                    await layer.deliver_local(group, message)
            if len(batch) < BATCH:
                return

    runtime.every("outbox", lambda: settings.WEBSOCKET_OUTBOX_POLL_INTERVAL, deliver_outbox)
