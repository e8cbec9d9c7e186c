"""The channel layer of the embedded default: in memory, and reachable from other processes.

`InMemoryChannelLayer` only exists inside one process. The server process holds the real one;
any other process (a management command, a shell, a cron script) that sends to a group has no
hub, so its group sends go to the database outbox (`realtime/outbox.py`), which the server
polls. With Redis configured none of this is used: every process reaches Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer

from realtime import groups, hub, outbox

logger = logging.getLogger(__name__)


def relays_through_outbox(layer: Any) -> bool:
    """Is this a process (a command, a shell) whose sends only reach the server via the outbox?"""
    return isinstance(layer, EmbeddedChannelLayer) and not hub.serving()


class EmbeddedChannelLayer(InMemoryChannelLayer):
    async def group_send_here(self, group: str, message: dict[str, Any]) -> None:
        """To this process's groups only, never through the outbox (the hub's own probes)."""
        await super().group_send(group, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if hub.serving():
            await super().group_send(group, message)
            return
        self.require_valid_group_name(group)
        try:
            await database_sync_to_async(outbox.outbox_put)(group=group, message=message)
        except Exception as exc:
            # No database either: behave like the plain in-memory layer (nobody to reach).
            logger.warning("could not write to the outbox (%s); the send reaches this process only", exc)
            await super().group_send(group, message)

    async def relay_personal(self, request: dict[str, Any]) -> None:
        """Ask the server to send a personal event: only it knows whether the user is connected."""
        group = groups.user(request["user_id"])
        await database_sync_to_async(outbox.outbox_put)(group=group, message=request, durable=True)

    async def deliver_local(self, group: str, message: dict[str, Any]) -> None:
        """Hand an outbox message to this process's groups (the server side of the outbox)."""
        await super().group_send(group, message)
