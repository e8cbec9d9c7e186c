"""/ws/world across two real instances sharing a private Redis: area of interest, nearby
players, departures and world events reach exactly the right watchers on every instance."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster import WsClient
from tests.support.db import db
from tests.support.faults import staff_token
from tests.support.world import create_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOWN, FOREST = "starter_town", "dark_forest"


@pytest.fixture(autouse=True)
async def zones():
    await db(create_default_zones)()


async def player(server, name):
    user_id, token = await asyncio.to_thread(server.register, name)
    client = await WsClient.open(f"{server.ws}/ws/world", token)
    client.user_id, client.token = user_id, token
    return client


async def enter(client, zone=TOWN, **xy):
    changed = await client.request({"type": "zone_change", "zone": zone, **xy}, timeout=10)
    assert changed["type"] == "zone_changed", changed
    nearby = await client.recv_type("nearby_players", timeout=10)
    return changed, nearby


async def watcher(server, x, y, zone=TOWN):
    client = await WsClient.open(f"{server.ws}/ws/world")
    await enter(client, zone, x=x, y=y)
    return client


async def move(client, x, y, zone=TOWN):
    """A move that must succeed; returns the frames the mover got before its ack."""
    frame_id = f"mv{x}-{y}"
    await client.send({"type": "player_movement", "zone": zone, "x": x, "y": y, "id": frame_id})
    before = []
    while (frame := await client.recv(10)).get("id") != frame_id:
        if frame["type"] != "ping":
            before.append(frame)
    assert frame == {"type": "ack", "id": frame_id}, frame
    return before


async def close_all(*clients):
    for client in clients:
        await client.close()


async def test_moves_reach_near_watchers_on_every_instance_and_no_one_else(cluster, unique):
    a, b = cluster[0], cluster[1]
    mover = await player(a, unique("mover"))
    await enter(mover)
    near_b = await watcher(b, 500, 560)  # anonymous, on the other instance
    near_a = await player(a, unique("near"))
    await enter(near_a)  # a player at the spawn too, on the mover's instance
    await mover.recv_type("player_entered", user_id=near_a.user_id, timeout=10)
    far_b = await watcher(b, 500, 700)
    other_zone_a = await watcher(a, 500, 500, FOREST)
    await move(mover, 520, 500)
    for client in (near_b, near_a):
        moved = await client.recv_type("player_movement", timeout=10)
        assert (moved["user_id"], moved["x"], moved["y"], moved["zone"]) == (mover.user_id, 520, 500, TOWN)
    assert await far_b.nothing_of("player_movement", 0.6)
    assert await other_zone_a.nothing_of("player_movement", 0.1)
    assert await mover.nothing_of("player_movement", 0.1)
    await close_all(mover, near_b, near_a, far_b, other_zone_a)


async def test_nearby_players_lists_players_connected_to_any_instance(cluster, unique):
    a, b = cluster[0], cluster[1]
    on_a, on_b = await player(a, unique("pa")), await player(b, unique("pb"))
    await enter(on_a)
    await enter(on_b)
    viewer = await WsClient.open(f"{b.ws}/ws/world")
    _, nearby = await enter(viewer, x=520, y=520)
    assert sorted(p["user_id"] for p in nearby["players"]) == sorted([on_a.user_id, on_b.user_id])
    await on_a.close()  # its position goes with its connection
    left = await viewer.recv_type("player_left", timeout=10)
    assert left["user_id"] == on_a.user_id
    reply = await viewer.request({"type": "nearby_players_request"})
    assert [p["user_id"] for p in reply["players"]] == [on_b.user_id]
    await close_all(on_b, viewer)


async def test_crossing_the_radius_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    mover = await player(a, unique("walker"))
    await enter(mover)
    other = await player(b, unique("standing"))
    await enter(other, FOREST)
    await enter(other)  # now at the town's spawn too
    await mover.recv_type("player_entered", user_id=other.user_id, timeout=10)
    stationary = await watcher(b, 500, 700)
    for y in (540, 580):
        assert await move(mover, 500, y) == []
    [left] = await move(mover, 500, 620)  # 120 from `other`, 80 from the watcher
    assert (left["type"], left["user_id"], left["zone"]) == ("player_left", other.user_id, TOWN)
    assert (await other.recv_type("player_left", timeout=10))["user_id"] == mover.user_id
    entered = await stationary.recv_type("player_entered", timeout=10)
    assert (entered["user_id"], entered["y"]) == (mover.user_id, 620)
    [entered] = await move(mover, 500, 580)  # 120 from the watcher, 80 from `other`
    assert (entered["type"], entered["user_id"]) == ("player_entered", other.user_id)
    assert (await stationary.recv_type("player_left", timeout=10))["user_id"] == mover.user_id
    await close_all(mover, other, stationary)


async def test_zone_change_tells_both_zones_on_both_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    mover = await player(a, unique("traveller"))
    await enter(mover)
    in_town = await watcher(b, 510, 490)
    in_forest = await watcher(a, 150, 150, FOREST)
    _, nearby = await enter(mover, FOREST)
    assert nearby["players"] == []
    left = await in_town.recv_type("player_left", timeout=10)
    assert (left["user_id"], left["zone"]) == (mover.user_id, TOWN)
    entered = await in_forest.recv_type("player_entered", timeout=10)
    assert (entered["user_id"], entered["zone"], entered["x"], entered["y"]) == (mover.user_id, FOREST, 100, 100)
    await close_all(mover, in_town, in_forest)


async def test_world_events_through_the_publish_route(cluster, unique):
    a, b = cluster[0], cluster[1]
    staff = (await staff_token(a, unique("staff")))[1]
    forest_b = await watcher(b, 1000, 1000, FOREST)
    town_a = await watcher(a, 500, 500)
    status, body = await asyncio.to_thread(
        a.request,
        "POST",
        "/api/v1/websocket/publish",
        {"target": "zone:dark_forest", "message": {"type": "world_event", "event": "dragon_spawn", "message": "!"}},
        staff,
    )
    assert status == 202, body
    event = await forest_b.recv_type("world_event", timeout=10)
    assert (event["event"], event["zone"], event["message"]) == ("dragon_spawn", FOREST, "!")
    assert await town_a.nothing_of("world_event", 0.6)
    status, _ = await asyncio.to_thread(
        b.request,
        "POST",
        "/api/v1/websocket/publish",
        {"target": "world", "message": {"type": "world_event", "event": "eclipse", "zone": None}},
        staff,
    )
    assert status == 202
    for client in (forest_b, town_a):
        assert (await client.recv_type("world_event", timeout=10))["event"] == "eclipse"
    status, body = await asyncio.to_thread(
        b.request,
        "POST",
        "/api/v1/websocket/publish",
        {"target": "zone:atlantis", "message": {"type": "world_event", "event": "x"}},
        staff,
    )
    assert status == 404 and "zone" in body["detail"]
    await close_all(forest_b, town_a)
