"""Zones for tests: the migration's default zones, re-created after each flush of the test database."""

from __future__ import annotations

import importlib

from django.apps import apps

from realtime.services import world

_migration = importlib.import_module("realtime.migrations.0005_world")
DEFAULT_ZONES = _migration.DEFAULT_ZONES


def create_default_zones() -> None:
    """What the data migration does (transactional tests flush the rows it created)."""
    _migration.create_default_zones(apps, None)
    world.zones_refresh_sync()
