"""World events (docs/protocol.md §7): from the server API, the publish route and the admin."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from realtime import groups
from realtime.features.world.zones import zone_get
from realtime.outbound import broadcast_to_channel, build_event
from realtime.protocol.world import WorldEventOut


async def world_event_send(*, event: str, message: str = "", zone: str | None = None, **extra: Any) -> bool:
    """Send `world_event` to one zone's watchers, or with `zone=None` to every world connection.

    Raises ValueError for a bad shape and LookupError for an unknown zone.
    """
    fields = WorldEventOut.model_validate({"event": event, "message": message, "zone": zone, **extra})
    if fields.zone is not None and await zone_get(fields.zone) is None:
        raise LookupError(f"no zone called {fields.zone!r}")
    payload = fields.model_dump()
    group = groups.zone(fields.zone) if fields.zone is not None else groups.world_all()
    return await broadcast_to_channel(group, build_event("world_event", **payload))


world_event_send_sync = async_to_sync(world_event_send)
