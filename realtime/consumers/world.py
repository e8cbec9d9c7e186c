"""`/ws/world`: movement with area of interest, zones, nearby players, world events (PROTOCOL §7)."""

from __future__ import annotations

from collections.abc import Iterable

from realtime import groups
from realtime.consumers.base import BaseConsumer


class WorldConsumer(BaseConsumer):
    endpoint = "world"
    requires_auth = False

    def initial_groups(self) -> Iterable[str]:
        return [groups.world_all()]
