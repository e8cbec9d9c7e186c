"""Zones for tests: the migration's default zones, re-created after each flush of the test database."""

from __future__ import annotations

import importlib
import pkgutil

from django.apps import apps

import realtime.migrations
from realtime.features.world import zones

# Found by name suffix: migrations are renumbered when features are merged.
_migration = importlib.import_module(
    "realtime.migrations."
    + next(m.name for m in pkgutil.iter_modules(realtime.migrations.__path__) if m.name.endswith("_world"))
)
DEFAULT_ZONES = _migration.DEFAULT_ZONES


def create_default_zones() -> None:
    """What the data migration does (transactional tests flush the rows it created)."""
    _migration.create_default_zones(apps, None)
    zones.zones_refresh_sync()
