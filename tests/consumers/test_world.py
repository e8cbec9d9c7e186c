"""PROTOCOL §7 on the in-process layer: zones, validation, area of interest, nearby players."""

from __future__ import annotations

import pytest

from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user
from tests.support.world import create_default_zones

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def zones():
    await db(create_default_zones)()


async def player(name=None):
    user = await db(make_user)(name)
    client = await connect("/ws/world", access_token(user))
    client.user_id = str(user.pk)
    return client


async def enter(client, zone="starter_town", **xy):
    changed = await client.request({"type": "zone_change", "zone": zone, **xy, "id": "zc"})
    assert changed["type"] == "zone_changed", changed
    nearby = await client.recv_type("nearby_players")
    return changed, nearby


async def test_smoke():
    a = await player()
    watcher = await connect("/ws/world")
    changed, nearby = await enter(watcher, x=500, y=560)
    assert nearby["players"] == []
    changed, nearby = await enter(a)
    assert (changed["x"], changed["y"]) == (500, 500)
    entered = await watcher.recv_type("player_entered")
    assert entered["user_id"] == a.user_id
    await a.send({"type": "player_movement", "zone": "starter_town", "x": 510, "y": 500})
    moved = await watcher.recv_type("player_movement")
    assert moved["x"] == 510
    await a.close()
    left = await watcher.recv_type("player_left")
    assert left["user_id"] == a.user_id
