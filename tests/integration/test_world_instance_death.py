"""Killed instances and limits shared by instances, each test with its own cluster (this module
uses no shared one, so no other live instance races to clean up after the dead one)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.world import create_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_cluster(django_db_blocker, request):
    env = getattr(request, "param", None)
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env=env).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
async def zones():
    await db(create_default_zones)()


async def test_killed_instance_players_leave_the_world_and_go_offline(own_cluster, unique):
    a, b = own_cluster[0], own_cluster[1]
    mate_id, mate_token = await asyncio.to_thread(a.register, unique("mate"))
    victim_id, victim_token = await asyncio.to_thread(b.register, unique("victim"))
    status, guild = await asyncio.to_thread(
        a.request, "POST", "/api/v1/guilds/", {"name": unique("G"), "open": True}, mate_token
    )
    assert status == 201
    await asyncio.to_thread(b.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, victim_token)
    mate = await WsClient.open(f"{a.ws}/ws/game", mate_token)
    watcher = await WsClient.open(f"{a.ws}/ws/world")
    await watcher.request({"type": "zone_change", "zone": "starter_town", "x": 520, "y": 520})
    far = await WsClient.open(f"{a.ws}/ws/world")
    await far.request({"type": "zone_change", "zone": "starter_town", "x": 900, "y": 900})
    victim = await WsClient.open(f"{b.ws}/ws/world", victim_token)
    await mate.recv_type("player_status", user_id=victim_id, status="online", timeout=10)
    await victim.request({"type": "zone_change", "zone": "starter_town"})
    await watcher.recv_type("player_entered", user_id=victim_id, timeout=10)
    nearby = await watcher.request({"type": "nearby_players_request"})
    assert [p["user_id"] for p in nearby["players"]] == [victim_id]

    b.kill()
    # Declared dead after 3 cleanup intervals (0.5 s each); the survivor cleans up and tells.
    left = await watcher.recv_type("player_left", timeout=15, user_id=victim_id)
    assert left["zone"] == "starter_town"
    offline = await mate.recv_type("player_status", timeout=15, user_id=victim_id)
    assert offline["status"] == "offline"
    assert await far.nothing_of("player_left", 0.3)
    nearby = await watcher.request({"type": "nearby_players_request"})
    assert nearby["players"] == []
    # The player comes back through the survivor.
    back = await WsClient.open(f"{a.ws}/ws/world", victim_token)
    await back.request({"type": "zone_change", "zone": "starter_town"})
    assert (await watcher.recv_type("player_entered", timeout=10))["user_id"] == victim_id
    for client in (mate, watcher, far, back):
        await client.close()


async def step(client, x):
    reply = await client.request({"type": "player_movement", "zone": "starter_town", "x": x, "y": 500})
    return reply["type"]


@pytest.mark.parametrize("own_cluster", [{"WORLD_MOVE_RATE_LIMIT": "6", "WORLD_MOVE_RATE_WINDOW": "60"}], indirect=True)
async def test_movement_rate_limit_is_per_user_across_instances(own_cluster, unique):
    a, b = own_cluster[0], own_cluster[1]
    _, token = await asyncio.to_thread(a.register, unique("runner"))
    on_a = await WsClient.open(f"{a.ws}/ws/world", token)
    on_b = await WsClient.open(f"{b.ws}/ws/world", token)
    await on_a.request({"type": "zone_change", "zone": "starter_town"})
    assert [await step(on_a, x) for x in (501, 502)] == ["ack", "ack"]
    await on_b.request({"type": "zone_change", "zone": "starter_town"})  # the player moves to b
    assert [await step(on_b, x) for x in (503, 504)] == ["ack", "ack"]
    # Two zone changes and four steps: the sixth move of the window, wherever it is sent.
    refused = await on_b.request({"type": "player_movement", "zone": "starter_town", "x": 505, "y": 500})
    assert refused["code"] == "rate_limited" and refused["details"] == {"limit": 6, "window_seconds": 60}
    await on_a.close()
    await on_b.close()
