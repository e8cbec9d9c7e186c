"""Fixtures that start real processes: a private Redis and two daphne instances."""

from __future__ import annotations

import itertools

import pytest

from tests.support.cluster import Cluster

_names = itertools.count(1)


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker):
    """Two instances sharing a private Redis and the test database (one set per test module)."""
    with django_db_blocker.unblock():
        running = Cluster(size=2).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def unique():
    """Unique user names across the whole run (the database is shared with the servers)."""
    return lambda prefix="u": f"{prefix}{next(_names)}x{id(object()) % 100000}"
