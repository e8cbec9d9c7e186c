"""The area-of-interest maths, the receiving-side filter, cell subscriptions and the zone cache."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from django.db import transaction

from realtime import aoi, groups
from realtime.boot import ensure_runtime
from realtime.features.world import views, zones
from realtime.features.world.views import WorldViews
from realtime.models import Zone
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import make_user
from tests.support.world import create_default_zones

R = 100.0


@pytest.fixture(autouse=True)
def radius(settings):
    settings.WORLD_NEARBY_RADIUS = R


class FakeConnection:
    """What the hub and the world's views read of a connection (hashable, unlike SimpleNamespace)."""

    def __init__(self):
        self.groups = set()
        self.id, self.user_id, self.endpoint = "c1", None, "world"


def watcher(x, y, zone="town"):
    return views.view_at(zone, x, y, player=False)


def args(old, new, *, skip=None, zone="town", primary=None):
    ox, oy = old or (None, None)
    nx, ny = new or (None, None)
    primary = primary or ("move" if old and new else "entered" if new else "left")
    return [zone, ox, oy, nx, ny, R, *(skip or (None, None)), primary]


@pytest.mark.parametrize(
    ("watcher_at", "old", "new", "kind"),
    [
        ((0, 0), (50, 0), (60, 0), "move"),
        ((0, 0), (150, 0), (100, 0), "entered"),  # on the circle counts as near
        ((0, 0), (100, 0), (100.001, 0), "left"),
        ((0, 0), (150, 0), (160, 0), None),
        ((0, 0), None, (0, 99), "entered"),
        ((0, 0), None, (0, 101), None),
        ((0, 0), (70, 70), None, "left"),  # 98.99 away
        ((0, 0), (71, 71), None, None),  # 100.41 away
    ],
)
def test_crossing(watcher_at, old, new, kind):
    assert views.crossing(*watcher_at, old, new, R) == kind


def test_filter_picks_the_frame_for_each_watcher():
    move = args((500, 500), (540, 500))
    assert views.frame_for(watcher(500, 560), move) == "text"  # near both: player_movement
    assert views.frame_for(watcher(420, 500), move) == "alt_left"  # 80 -> 120
    assert views.frame_for(watcher(620, 500), move) == "alt_entered"  # 120 -> 80
    assert views.frame_for(watcher(900, 900), move) is None
    assert views.frame_for(watcher(500, 560, zone="forest"), move) is None
    assert views.frame_for(None, move) is None
    # Arrivals and departures have one frame only: it is the broadcast's main one.
    assert views.frame_for(watcher(500, 560), args(None, (500, 500))) == "text"
    assert views.frame_for(watcher(500, 560), args((500, 500), None)) == "text"


def test_filter_skips_watchers_served_by_the_new_cell():
    # A move from cell (2, 2) to (3, 2): the old cell's copy carries skip = (3, 2).
    old, new = (295, 250), (305, 250)
    old_copy = args(old, new, skip=(3, 2))
    new_copy = args(old, new)
    for w in [watcher(250, 250), watcher(350, 250), watcher(310, 330)]:  # cells touching (3, 2)
        assert views.frame_for(w, old_copy) is None
        assert views.frame_for(w, new_copy) == "text"
    leaving = watcher(199, 250)  # cell (1, 2): only in the old cell's group, 96 -> 106
    assert views.frame_for(leaving, old_copy) == "alt_left"


def test_every_point_within_the_radius_is_in_a_watched_cell():
    rng = random.Random(1)
    for _ in range(2000):
        wx, wy = rng.uniform(-500, 1500), rng.uniform(-500, 1500)
        angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(0, R)
        px, py = wx + distance * math.cos(angle), wy + distance * math.sin(angle)
        view = views.view_at("town", wx, wy, player=False)
        assert groups.zone_cell("town", *aoi.cell_of(px, py, R)) in views.view_groups(view)


def test_view_groups_are_the_zone_and_3x3_cells():
    view = views.view_at("town", 250, 150, player=True)
    assert (view.cx, view.cy) == (2, 1)
    expected = {groups.zone("town")} | {groups.zone_cell("town", i, j) for i in (1, 2, 3) for j in (0, 1, 2)}
    assert views.view_groups(view) == expected
    assert views.view_groups(None) == set()


async def test_view_set_moves_between_cell_groups():
    runtime = await ensure_runtime()
    hub = runtime.hub
    conn = FakeConnection()
    watching = WorldViews(hub)
    await watching.watch(conn, views.view_at("town", 250, 150, player=False))
    assert conn.groups == views.view_groups(watching.of(conn))
    await watching.watch(conn, views.view_at("town", 350, 150, player=False))  # one cell east
    assert conn.groups == views.view_groups(watching.of(conn))
    assert groups.zone_cell("town", 1, 1) not in conn.groups
    assert conn in hub.members(groups.zone_cell("town", 4, 1))
    assert conn not in hub.members(groups.zone_cell("town", 1, 1))
    await watching.watch(conn, views.view_at("forest", 0, 0, player=False))
    assert conn.groups == views.view_groups(watching.of(conn))
    assert not any("town" in name for name in conn.groups)
    await watching.watch(conn, None)
    assert conn.groups == set()


# --- zone cache --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_zones_come_from_the_cache_without_database_reads():
    await db(create_default_zones)()
    town = await zones.zone_get("starter_town")
    assert (town.min_x, town.max_x, town.spawn_x, town.spawn_y) == (0, 1000, 500, 500)
    forest = await zones.zone_get("dark_forest")
    assert (forest.max_x, forest.max_y, forest.spawn_x, forest.spawn_y) == (2000, 2000, 100, 100)
    await db(Zone.objects.filter(name="starter_town").update)(max_x=10)
    assert (await zones.zone_get("starter_town")).max_x == 1000  # cached
    await zones.zones_refresh()
    assert (await zones.zone_get("starter_town")).max_x == 10


@pytest.mark.django_db(transaction=True)
async def test_unknown_and_malformed_zone_names(monkeypatch):
    await db(create_default_zones)()
    assert await zones.zone_get("atlantis") is None
    assert await zones.zone_get("Starter Town") is None
    # A name found missing is not looked up again for a while; a new zone appears after that.
    await db(Zone.objects.create)(name="atlantis", max_x=10, max_y=10, spawn_x=1, spawn_y=1)
    assert await zones.zone_get("atlantis") is None
    monkeypatch.setattr(zones, "MISSING_ZONE_SECONDS", 0)
    assert (await zones.zone_get("atlantis")).max_x == 10


@pytest.mark.django_db(transaction=True)
async def test_admin_save_refreshes_the_cache_and_notifies_instances():
    await db(create_default_zones)()
    client = await connect("/ws/world")  # this instance now has a member of world.all
    runtime = await ensure_runtime()
    seen = []

    def recording(conn, message):
        seen.append(message["op"])
        zones.on_zones_changed(runtime, message)

    runtime.hub.register_control(zones.ZONES_CHANGED, recording)

    def edit():
        with transaction.atomic():
            Zone.objects.filter(name="dark_forest").update(spawn_x=7)
            zones.zones_changed_on_commit()

    await db(edit)()
    assert (await zones.zone_get("dark_forest")).spawn_x == 7
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.02)
    assert seen == [zones.ZONES_CHANGED]
    await client.close()


@pytest.mark.django_db(transaction=True)
def test_zones_are_edited_in_the_admin_and_checked(client):

    create_default_zones()
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    assert client.get("/admin/realtime/zone/").status_code == 200
    form = {"name": "swamp", "title": "", "min_x": 0, "max_x": 100, "min_y": 0, "max_y": 100, "spawn_x": 150}
    response = client.post("/admin/realtime/zone/add/", {**form, "spawn_y": 50})
    assert response.status_code == 200 and b"inside the bounds" in response.content
    response = client.post("/admin/realtime/zone/add/", {**form, "name": "Swamp Land", "spawn_x": 5, "spawn_y": 5})
    assert response.status_code == 200 and not Zone.objects.filter(name="Swamp Land").exists()
    response = client.post("/admin/realtime/zone/add/", {**form, "spawn_x": 5, "spawn_y": 5})
    assert response.status_code == 302
    # Saved zones reach this process's cache at once, without waiting for the periodic refresh.
    assert zones._cache.zones["swamp"].spawn_x == 5
