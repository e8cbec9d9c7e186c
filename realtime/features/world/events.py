"""World events (docs/protocol.md §7): from the server API, the publish route and the admin.

A zone's world events are the stream `world:<zone>` (docs/protocol.md §12). One for every zone
(`zone` null) is the next frame of every zone's stream, and reaches the world connections that
watch no zone yet as a plain broadcast (the hub filter `world_unwatched`).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from realtime import groups
from realtime.features.world.views import UNWATCHED_FILTER
from realtime.features.world.zones import zone_get, zones_all
from realtime.outbound import broadcast_to_channel, broadcast_to_stream, build_event
from realtime.protocol import streams
from realtime.protocol.world import WorldEventOut


async def world_event_send(*, event: str, message: str = "", zone: str | None = None, **extra: Any) -> bool:
    """Send `world_event` to one zone's watchers, or with `zone=None` to every world connection.

    Raises ValueError for a bad shape and LookupError for an unknown zone.
    """
    fields = WorldEventOut.model_validate({"event": event, "message": message, "zone": zone, **extra})
    if fields.zone is not None and await zone_get(fields.zone) is None:
        raise LookupError(f"no zone called {fields.zone!r}")
    frame = build_event("world_event", **fields.model_dump())
    if fields.zone is not None:
        return (await broadcast_to_stream(streams.world(fields.zone), groups.zone(fields.zone), frame)).reached
    reached = await broadcast_to_channel(groups.world_all(), frame, filter_name=UNWATCHED_FILTER)
    for name in await zones_all():
        reached &= (await broadcast_to_stream(streams.world(name), groups.zone(name), frame)).reached
    return reached


world_event_send_sync = async_to_sync(world_event_send)
