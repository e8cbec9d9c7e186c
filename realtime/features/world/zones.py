"""Zones (docs/protocol.md §7): data in the database, read into a per-process cache so a move
does no database read; an admin edit reaches every instance at once through a control."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.db import transaction

from realtime import groups
from realtime.models.world import ZONE_NAME_PATTERN, Zone
from realtime.outbound import send_control_sync
from realtime.runtime import Runtime

ZONES_CHANGED = "world_zones_changed"

# A name that is no zone is remembered this long, so unknown names cannot turn every frame into
# a query; zones created outside the admin (shell, fixtures) become visible within this time.
MISSING_ZONE_SECONDS = 5.0
MISSING_ZONE_MEMORY = 1000

_zone_name = re.compile(ZONE_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    name: str
    min_x: float
    min_y: float
    max_x: float
    max_y: float
    spawn_x: float
    spawn_y: float

    def contains(self, x: float, y: float) -> bool:
        return self.min_x <= x <= self.max_x and self.min_y <= y <= self.max_y

    def clamp(self, x: float, y: float) -> tuple[float, float]:
        """The nearest point inside the bounds."""
        return min(max(x, self.min_x), self.max_x), min(max(y, self.min_y), self.max_y)

    def bounds(self) -> dict[str, float]:
        return {"min_x": self.min_x, "min_y": self.min_y, "max_x": self.max_x, "max_y": self.max_y}


_ZONE_FIELDS = ("name", "min_x", "min_y", "max_x", "max_y", "spawn_x", "spawn_y")


class _ZoneCache:
    """Zones of this process. Replaced whole (one assignment), so readers never see half a load."""

    def __init__(self) -> None:
        self.zones: dict[str, ZoneSpec] = {}
        self.loaded = False
        self.missing: dict[str, float] = {}
        self.last_notice: str | None = None

    def replace(self, zones: dict[str, ZoneSpec]) -> None:
        self.zones = zones
        self.loaded = True
        self.missing = {}


_cache = _ZoneCache()


def zones_load() -> dict[str, ZoneSpec]:
    """Every zone from the database (sync)."""
    return {row[0]: ZoneSpec(*row) for row in Zone.objects.values_list(*_ZONE_FIELDS)}


def _zone_load_one(name: str) -> ZoneSpec | None:
    row = Zone.objects.filter(name=name).values_list(*_ZONE_FIELDS).first()
    return ZoneSpec(*row) if row else None


def zones_refresh_sync() -> None:
    _cache.replace(zones_load())


async def zones_refresh() -> None:
    """Reload this process's zone cache (periodically, and when the admin changed a zone)."""
    _cache.replace(await database_sync_to_async(zones_load)())


async def zone_get(name: str) -> ZoneSpec | None:
    """The zone called `name`, from the cache; a name not cached is looked up once."""
    zone = _cache.zones.get(name)
    if zone is not None or not _zone_name.match(name):
        return zone
    if not _cache.loaded:
        await zones_refresh()
        return _cache.zones.get(name)
    missed = _cache.missing.get(name)
    if missed is not None and time.monotonic() - missed < MISSING_ZONE_SECONDS:
        return None
    zone = await database_sync_to_async(_zone_load_one)(name)
    if zone is None:
        if len(_cache.missing) >= MISSING_ZONE_MEMORY:
            _cache.missing = {}
        _cache.missing[name] = time.monotonic()
    else:
        _cache.zones = {**_cache.zones, name: zone}
    return zone


async def zones_all() -> list[str]:
    """The names of every zone (from the cache, loaded first if need be)."""
    if not _cache.loaded:
        await zones_refresh()
    return sorted(_cache.zones)


def zones_changed_on_commit() -> None:
    """After an admin edit: reload here, and tell every instance with world watchers to reload."""

    def notify() -> None:
        zones_refresh_sync()
        send_control_sync(groups.world_all(), ZONES_CHANGED)

    transaction.on_commit(notify)


def on_zones_changed(runtime: Runtime, message: dict[str, Any]) -> None:
    """The `world_zones_changed` control: it runs once per local member of `world.all`, so
    reload once per notice."""
    notice = message.get("id")
    if notice == _cache.last_notice:
        return
    _cache.last_notice = notice
    runtime.spawn(zones_refresh(), "zone refresh")
