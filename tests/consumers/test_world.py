"""docs/protocol.md §7 on the in-process layer: zones, validation, area of interest, nearby players."""

from __future__ import annotations

import asyncio

import pytest

from realtime.boot import ensure_runtime
from realtime.features.world import events as world
from realtime.features.world import zones as zone_cache
from tests.support.communicator import connect, unpositioned
from tests.support.db import db
from tests.support.users import access_token, make_user
from tests.support.world import create_default_zones

pytestmark = pytest.mark.django_db(transaction=True)

TOWN = "starter_town"


@pytest.fixture(autouse=True)
async def zones(settings):
    settings.WORLD_NEARBY_RADIUS = 100.0
    settings.WORLD_MAX_STEP = 50.0
    settings.WORLD_MOVE_RATE_LIMIT = 0
    await db(create_default_zones)()


async def player(user=None):
    user = user or await db(make_user)()
    client = await connect("/ws/world", access_token(user))
    client.user_id = str(user.pk)
    client.user = user
    return client


async def enter(client, zone=TOWN, **xy):
    changed = await client.request({"type": "zone_change", "zone": zone, **xy, "id": "zc"})
    assert changed["type"] == "zone_changed", changed
    nearby = await client.recv_type("nearby_players")
    assert nearby["id"] == "zc" and nearby["zone"] == zone
    return changed, nearby


async def watch(x, y, zone=TOWN):
    client = await connect("/ws/world")
    await enter(client, zone, x=x, y=y)
    return client


async def move(client, x, y, zone=TOWN):
    """A move that must succeed (the ack proves it was applied before we look at watchers)."""
    reply = await client.request({"type": "player_movement", "zone": zone, "x": x, "y": y, "id": "mv"})
    assert reply == {"type": "ack", "id": "mv"}, reply


async def walk(client, path, zone=TOWN):
    for x, y in path:
        await move(client, x, y, zone)


async def error_for(client, frame):
    reply = await client.request({"id": "e", **frame})
    assert reply["type"] == "error", reply
    return reply


def without_timestamp(frame):
    assert frame["timestamp"].endswith("Z")
    return {k: v for k, v in frame.items() if k != "timestamp"}


async def frames(client, quiet=0.3):
    """Every frame until none arrives for `quiet` seconds (pings left out)."""
    got = []
    while not await client.nothing(quiet):
        frame = await client.recv()
        if frame["type"] != "ping":
            got.append(frame)
    return got


# --- zone_change ---------------------------------------------------------------------------


async def test_player_enters_at_spawn_whatever_xy_it_sends():
    a = await player()
    changed, nearby = await enter(a, x=10, y=10)
    assert changed["zone"] == TOWN and (changed["x"], changed["y"]) == (500, 500)
    assert changed["timestamp"].endswith("Z")
    assert nearby["players"] == [] and nearby["timestamp"].endswith("Z")
    changed, _ = await enter(a, "dark_forest")
    assert (changed["x"], changed["y"]) == (100, 100)


async def test_anonymous_watches_around_xy_or_the_spawn():
    a = await player()
    await enter(a)  # at (500, 500)
    watcher = await connect("/ws/world")
    _, nearby = await enter(watcher, x=450, y=450)  # 70.7 away
    assert nearby["players"] == [{"user_id": a.user_id, "username": a.user.username, "x": 500.0, "y": 500.0}]
    _, nearby = await enter(watcher, x=100, y=100)
    assert nearby["players"] == []
    changed, nearby = await enter(watcher)
    assert (changed["x"], changed["y"]) == (500, 500) and len(nearby["players"]) == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"zone": "atlantis"}, "not_found"),
        ({"zone": "Starter Town"}, "not_found"),
        ({"zone": ""}, "invalid_message"),
        ({"zone": "z" * 65}, "invalid_message"),
        ({"zone": 5}, "invalid_message"),
        ({}, "invalid_message"),
        ({"zone": TOWN, "x": 5}, "invalid_message"),
        ({"zone": TOWN, "x": "5", "y": 5}, "invalid_message"),
        ({"zone": TOWN, "x": 1001, "y": 5}, "invalid_message"),
        ({"zone": TOWN, "x": -0.5, "y": 5}, "invalid_message"),
    ],
)
async def test_bad_zone_changes(frame, code):
    watcher = await connect("/ws/world")
    error = await error_for(watcher, {"type": "zone_change", **frame})
    assert error["code"] == code and error["id"] == "e"
    if frame.get("x") == 1001:
        assert error["details"]["bounds"] == {"min_x": 0, "min_y": 0, "max_x": 1000, "max_y": 1000}
    # Still watching nothing, and the connection is fine.
    assert (await watcher.request({"type": "nearby_players_request"}))["zone"] is None


async def test_zone_change_tells_old_and_new_neighbours():
    mover = await player()
    await enter(mover)
    near_old = await watch(520, 520)
    far_old = await watch(800, 800)
    near_new = await watch(150, 150, "dark_forest")  # spawn is (100, 100)
    far_new = await watch(1000, 1000, "dark_forest")
    other = await player()
    await enter(other, "dark_forest")  # also at the forest's spawn
    await near_new.recv_type("player_entered")
    _, nearby = await enter(mover, "dark_forest")
    assert [p["user_id"] for p in nearby["players"]] == [other.user_id]
    left = await near_old.recv_type("player_left")
    assert without_timestamp(left) == {"type": "player_left", "user_id": mover.user_id, "zone": TOWN}
    entered = await near_new.recv_type("player_entered")
    assert without_timestamp(entered) == {
        "type": "player_entered",
        "user_id": mover.user_id,
        "username": mover.user.username,
        "zone": "dark_forest",
        "x": 100.0,
        "y": 100.0,
    }
    other_sees = await other.recv_type("player_entered")
    assert other_sees["user_id"] == mover.user_id
    assert await far_old.nothing() and await far_new.nothing()


async def test_zone_change_within_the_zone_is_a_move_for_those_near_both_spots():
    mover = await player()
    await enter(mover)
    await walk(mover, [(540, 500), (580, 500)])
    both = await watch(540, 500)  # 40 from (580, 500), 40 from the spawn
    only_old = await watch(660, 500)  # 80 from (580, 500), 160 from the spawn
    await enter(mover)  # back to the spawn
    assert [f["type"] for f in await frames(both)] == ["player_movement"]
    assert [f["type"] for f in await frames(only_old)] == ["player_left"]


# --- movement ------------------------------------------------------------------------------


async def test_movement_reaches_only_watchers_within_the_radius():
    mover = await player()
    await enter(mover)
    near = await watch(500, 580)
    edge = await watch(600, 500)  # exactly one radius from (500, 500), 90 after the move
    far = await watch(500, 650)
    elsewhere = await watch(500, 500, "dark_forest")
    anonymous_near = await watch(450, 500)
    await move(mover, 510, 500)
    for watcher in (near, edge, anonymous_near):
        moved = await watcher.recv_type("player_movement")
        assert without_timestamp(moved) == {
            "type": "player_movement",
            "user_id": mover.user_id,
            "username": mover.user.username,
            "x": 510.0,
            "y": 500.0,
            "zone": TOWN,
        }
    assert await far.nothing() and await elsewhere.nothing()
    assert await mover.nothing()  # the mover does not hear its own move


async def test_move_without_id_is_not_acknowledged():
    mover = await player()
    await enter(mover)
    await mover.send({"type": "player_movement", "zone": TOWN, "x": 501, "y": 500})
    assert await mover.nothing()
    assert (await mover.request({"type": "nearby_players_request"}))["type"] == "nearby_players"


async def test_watcher_gets_entered_and_left_exactly_once_as_a_player_crosses_its_radius():
    mover = await player()
    await enter(mover)
    watcher = await watch(500, 650)
    await walk(mover, [(500, 540), (500, 560), (500, 600), (500, 560), (500, 540), (500, 520)])
    kinds = [f["type"] for f in await frames(watcher)]
    # 150 -> 110 (far) -> 90 entered -> 50 move -> 90 move -> 110 left -> 130 (far)
    assert kinds == ["player_entered", "player_movement", "player_movement", "player_left"]


async def test_crossing_a_cell_border_sends_one_frame_per_watcher():
    mover = await player()
    await enter(mover)  # cell (5, 5)
    await walk(mover, [(540, 500), (580, 500), (595, 500)])
    near_both = await watch(600, 450)  # cell (6, 4): its 3x3 holds the old and the new cell
    leaving = await watch(499, 500)  # cell (4, 5): 96 -> 106, only the old cell is around it
    arriving = await watch(700, 500)  # cell (7, 5): 105 -> 95, only the new cell is around it
    await move(mover, 605, 500)  # cell (5, 5) -> (6, 5)
    assert [f["type"] for f in await frames(near_both)] == ["player_movement"]
    assert [f["type"] for f in await frames(leaving)] == ["player_left"]
    assert [f["type"] for f in await frames(arriving)] == ["player_entered"]
    await move(mover, 595, 500)  # and back
    assert [f["type"] for f in await frames(near_both)] == ["player_movement"]
    assert [f["type"] for f in await frames(leaving)] == ["player_entered"]
    assert [f["type"] for f in await frames(arriving)] == ["player_left"]


async def test_mover_hears_about_players_it_comes_near_or_leaves_behind():
    a, b = await player(), await player()
    await enter(b)
    await enter(a)
    await b.recv_type("player_entered")
    await walk(a, [(500, 540), (500, 580)])
    await a.send({"type": "player_movement", "zone": TOWN, "x": 500, "y": 620, "id": 1})  # 120 from b
    left, ack = await frames(a)
    assert without_timestamp(left) == {"type": "player_left", "user_id": b.user_id, "zone": TOWN}
    assert ack == {"type": "ack", "id": 1}  # the mover's own news come first
    assert (await b.recv_type("player_left"))["user_id"] == a.user_id
    await a.send({"type": "player_movement", "zone": TOWN, "x": 500, "y": 580})
    [entered] = await frames(a)
    assert without_timestamp(entered) == {
        "type": "player_entered",
        "user_id": b.user_id,
        "username": b.user.username,
        "zone": TOWN,
        "x": 500.0,
        "y": 500.0,
    }
    assert (await b.recv_type("player_entered"))["user_id"] == a.user_id


async def test_watching_cells_follow_the_players_moves():
    a, b = await player(), await player()
    await enter(a)
    await walk(a, [(500 + 45 * i, 500) for i in range(1, 9)])  # to (860, 500), four cells east
    await enter(b)  # at the spawn, far behind a
    await b.send({"type": "player_movement", "zone": TOWN, "x": 530, "y": 500})
    assert await a.nothing()
    watcher_far_east = await watch(900, 500)
    await move(a, 870, 500)
    assert (await watcher_far_east.recv_type("player_movement"))["x"] == 870


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"x": 1001, "y": 500}, "invalid_message"),
        ({"x": 500, "y": -1}, "invalid_message"),
        ({"x": 530, "y": 541}, "invalid_message"),  # a step of 50.01
        ({"x": "510", "y": 500}, "invalid_message"),
        ({"x": True, "y": 500}, "invalid_message"),
        ({"x": None, "y": 500}, "invalid_message"),
        ({"y": 500}, "invalid_message"),
        ({"x": 510, "y": 500, "zone": "dark_forest"}, "forbidden"),
        ({"x": 510, "y": 500, "zone": "atlantis"}, "not_found"),
    ],
)
async def test_bad_moves_change_nothing(frame, code):
    mover = await player()
    await enter(mover)
    watcher = await watch(500, 520)
    error = await error_for(mover, {"type": "player_movement", "zone": TOWN, **frame})
    assert error["code"] == code, error
    if frame.get("x") == 530:
        assert error["details"] == {"max_step": 50.0, "x": 500.0, "y": 500.0}
    if code == "forbidden":
        assert error["details"] == {"zone": TOWN}
    assert await watcher.nothing()
    await move(mover, 530, 540)  # exactly WORLD_MAX_STEP: allowed
    assert (await watcher.recv_type("player_movement"))["x"] == 530


@pytest.mark.parametrize("text", ['{"type": "player_movement", "zone": "starter_town", "x": 1e400, "y": 1}'])
async def test_non_finite_coordinates_are_refused(text):
    mover = await player()
    await enter(mover)
    await mover.send(text)
    assert (await mover.recv())["code"] == "invalid_json"


async def test_anonymous_connections_may_not_move():
    watcher = await connect("/ws/world")
    await enter(watcher)
    error = await error_for(watcher, {"type": "player_movement", "zone": TOWN, "x": 500, "y": 500})
    assert error["code"] == "authentication_required"


async def test_moving_before_entering_a_zone_is_forbidden():
    mover = await player()
    error = await error_for(mover, {"type": "player_movement", "zone": TOWN, "x": 500, "y": 500})
    assert error["code"] == "forbidden" and error["details"] == {"zone": None}


async def test_movement_rate_limit_is_per_user_across_connections(settings):
    settings.WORLD_MOVE_RATE_LIMIT = 5  # zone changes count as moves (docs/protocol.md §3)
    settings.WORLD_MOVE_RATE_WINDOW = 60
    first = await player()
    second = await player(first.user)
    await enter(first)
    await walk(first, [(501, 500), (502, 500)])
    await enter(second)  # takes the player over
    await move(second, 503, 500)
    error = await error_for(second, {"type": "player_movement", "zone": TOWN, "x": 504, "y": 500})
    assert error["code"] == "rate_limited" and error["details"] == {"limit": 5, "window_seconds": 60}
    refused = await second.request({"type": "zone_change", "zone": TOWN})
    assert refused["code"] == "rate_limited" and refused["details"]["limit"] == 5


async def test_a_second_connection_takes_the_player_over():
    first = await player()
    second = await player(first.user)
    watcher = await watch(500, 520)
    await enter(first)
    await watcher.recv_type("player_entered")
    await enter(second)  # same user, same zone: the player is re-placed at the spawn
    error = await error_for(first, {"type": "player_movement", "zone": TOWN, "x": 501, "y": 500})
    assert error["code"] == "forbidden"
    await move(second, 502, 500)
    await first.close()  # not the owner any more: the player stays in the world
    await move(second, 503, 500)
    assert [f["type"] for f in await frames(watcher)] == ["player_movement", "player_movement", "player_movement"]
    nearby = await watcher.request({"type": "nearby_players_request"})
    assert [p["x"] for p in nearby["players"]] == [503]


# --- nearby players and leaving --------------------------------------------------------------


async def test_nearby_players_request_lists_players_within_the_radius_but_not_oneself():
    a, b, c = await player(), await player(), await player()
    for client in (a, b, c):
        await enter(client)
    await walk(c, [(500, 550), (500, 600), (500, 601)])  # 101 away
    reply = await a.request({"type": "nearby_players_request", "id": 7})
    assert reply["id"] == 7 and reply["zone"] == TOWN and reply["timestamp"].endswith("Z")
    assert reply["players"] == [{"user_id": b.user_id, "username": b.user.username, "x": 500.0, "y": 500.0}]


async def test_before_zone_change_a_connection_watches_nothing():
    mover = await player()
    await enter(mover)
    watcher = await connect("/ws/world")
    reply = await watcher.request({"type": "nearby_players_request"})
    assert (reply["zone"], reply["players"]) == (None, [])
    await move(mover, 510, 500)
    assert await watcher.nothing()


async def test_closing_the_connection_removes_the_player():
    mover = await player()
    await enter(mover)
    watcher = await watch(500, 560)
    await mover.close()
    left = await watcher.recv_type("player_left")
    assert left["user_id"] == mover.user_id and left["zone"] == TOWN
    assert (await watcher.request({"type": "nearby_players_request"}))["players"] == []


# --- world events ----------------------------------------------------------------------------


async def test_world_events_reach_a_zone_or_the_whole_world():
    in_forest = await watch(1500, 1500, "dark_forest")
    in_town = await watch(500, 500)
    nowhere = await connect("/ws/world")
    await world.world_event_send(event="dragon_spawn", zone="dark_forest", message="A dragon!")
    event = await in_forest.recv_type("world_event")
    assert (event["stream"], event["offset"]) == ("world:dark_forest", 1)  # the zone's stream (§12)
    event = unpositioned(event)
    assert without_timestamp(event) == {
        "type": "world_event",
        "event": "dragon_spawn",
        "message": "A dragon!",
        "zone": "dark_forest",
    }
    assert await in_town.nothing() and await nowhere.nothing()
    await world.world_event_send(event="eclipse", message="The sky darkens.")
    for client in (in_forest, in_town, nowhere):
        event = await client.recv_type("world_event")
        assert (event["event"], event["zone"]) == ("eclipse", None)
    # Watching another zone stops the first zone's events.
    await enter(in_forest, TOWN)
    await world.world_event_send(event="dragon_spawn", zone="dark_forest")
    assert await in_forest.nothing()


async def test_world_event_api_checks_its_input():
    with pytest.raises(LookupError):
        await world.world_event_send(event="x", zone="atlantis")
    with pytest.raises(ValueError):
        await world.world_event_send(event="", zone=None)
    with pytest.raises(ValueError):
        await world.world_event_send(event="x", message=5)


async def test_moves_read_zones_from_the_cache_not_the_database(monkeypatch):
    mover = await player()
    await enter(mover)
    watcher = await watch(500, 540)

    def no_database(*args, **kwargs):
        raise AssertionError("the database was read")

    monkeypatch.setattr(zone_cache, "zones_load", no_database)
    monkeypatch.setattr(zone_cache, "_zone_load_one", no_database)
    await walk(mover, [(510, 500), (520, 500)])
    assert (await watcher.recv_type("player_movement"))["x"] == 510


async def test_a_vanished_position_is_put_back_by_the_connection_holding_the_player():
    mover = await player()
    await enter(mover)
    watcher = await watch(500, 540)
    # As if a survivor had purged this instance during an outage, or Redis restarted empty.
    await (await ensure_runtime()).store.position_remove(mover.user_id)
    await move(mover, 510, 500)
    kinds = [f["type"] for f in await frames(watcher)]
    assert kinds == ["player_entered", "player_movement"]
    nearby = await watcher.request({"type": "nearby_players_request"})
    assert [(p["user_id"], p["x"]) for p in nearby["players"]] == [(mover.user_id, 510)]


# --- resuming a position (docs/protocol.md §7) --------------------------------------------------


async def test_a_player_back_in_the_same_zone_soon_resumes_where_it_left(settings):
    settings.WORLD_RESUME_SECONDS = 30
    first = await player()
    await enter(first)
    await walk(first, [(540, 500), (580, 500)])
    await first.close()
    watcher = await watch(580, 520)
    back = await player(first.user)
    changed, _ = await enter(back)
    assert (changed["x"], changed["y"]) == (580, 500)
    entered = await watcher.recv_type("player_entered")
    assert (entered["user_id"], entered["x"], entered["y"]) == (back.user_id, 580, 500)
    # Used once: entering the zone again (a jump within it) is the spawn point as before.
    await back.close()
    await asyncio.sleep(0)
    again = await player(first.user)
    await enter(again, "dark_forest")  # another zone: the spawn point, and the old spot is forgotten
    changed, _ = await enter(again)
    assert (changed["x"], changed["y"]) == (500, 500)
    await again.close()
    await watcher.close()


async def test_after_the_resume_window_or_with_it_off_players_enter_at_the_spawn_point(settings):
    settings.WORLD_RESUME_SECONDS = 0.2
    first = await player()
    await enter(first)
    await move(first, 540, 500)
    await first.close()
    await asyncio.sleep(0.4)
    back = await player(first.user)
    changed, _ = await enter(back)
    assert (changed["x"], changed["y"]) == (500, 500)
    await back.close()
    settings.WORLD_RESUME_SECONDS = 0
    second = await player(first.user)
    await enter(second)
    await move(second, 540, 500)
    await second.close()
    third = await player(first.user)
    changed, _ = await enter(third)
    assert (changed["x"], changed["y"]) == (500, 500)
    await third.close()
