"""Scale-out over Redis with real daphne processes: cross-instance delivery, presence,
membership moves, registry, dead-instance cleanup, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from realtime.models import Connection
from tests.support.cluster import WsClient
from tests.support.db import db
from tests.support.faults import staff_token, until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def test_publish_on_one_instance_reaches_the_other(cluster, unique):
    a, b = cluster[0], cluster[1]
    token = (await staff_token(a, unique("staff")))[1]
    watchers = [await WsClient.open(f"{b.ws}/ws/game"), await WsClient.open(f"{a.ws}/ws/game")]
    status, body = await asyncio.to_thread(
        a.request,
        "POST",
        "/api/v1/websocket/publish",
        {"target": "game", "message": {"type": "system_announcement", "message": "hello", "level": "info"}},
        token,
    )
    assert status == 202, body
    for watcher in watchers:
        frame = await watcher.recv_type("system_announcement")
        assert frame["message"] == "hello" and frame["timestamp"].endswith("Z")
        await watcher.close()


async def test_personal_message_reaches_every_connection_of_the_user(cluster, unique):
    a, b = cluster[0], cluster[1]
    staff = (await staff_token(a, unique("staff")))[1]
    user_id, token = await asyncio.to_thread(b.register, unique("p"))
    on_a = await WsClient.open(f"{a.ws}/ws/game", token)
    on_b = await WsClient.open(f"{b.ws}/ws/game", token)
    status, body = await asyncio.to_thread(
        b.request,
        "POST",
        "/api/v1/websocket/publish",
        {
            "target": f"user:{user_id}",
            "message": {"type": "achievement", "user_id": user_id, "achievement": "first_kill"},
        },
        staff,
    )
    assert status == 202 and body["delivery"] == "live"
    for client in (on_a, on_b):
        assert (await client.recv_type("achievement"))["achievement"] == "first_kill"
        await client.close()


async def test_offline_personal_event_is_delivered_once_on_next_connection(cluster, unique):
    a, b = cluster[0], cluster[1]
    staff = (await staff_token(a, unique("staff")))[1]
    user_id, token = await asyncio.to_thread(b.register, unique("p"))
    for n in range(3):
        status, body = await asyncio.to_thread(
            a.request,
            "POST",
            "/api/v1/websocket/publish",
            {
                "target": f"user:{user_id}",
                "message": {"type": "achievement", "user_id": user_id, "achievement": f"a{n}"},
            },
            staff,
        )
        assert body["delivery"] == "stored"
    # Two connections at the same moment on two instances: each event arrives exactly once.
    first, second = await asyncio.gather(
        WsClient.open(f"{a.ws}/ws/game", token), WsClient.open(f"{b.ws}/ws/game", token)
    )
    got: list[str] = []

    async def all_three_arrived() -> bool:
        for client in (first, second):
            with contextlib.suppress(TimeoutError):
                while True:
                    frame = await client.recv(0.1)
                    if frame["type"] == "achievement":
                        got.append(frame["achievement"])
        return len(got) >= 3

    await until(all_three_arrived, timeout=15, every=0.05, what="the three kept events")
    for client in (first, second):
        assert await client.nothing_of("achievement", 0.5)  # and none twice
    assert sorted(got) == ["a0", "a1", "a2"]
    for client in (first, second):
        await client.close()
    # A later connection gets nothing again.
    again = await WsClient.open(f"{b.ws}/ws/game", token)
    assert await again.nothing_of("achievement", 0.5)
    await again.close()


async def test_presence_across_instances_and_membership_moves(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
    status, guild = await asyncio.to_thread(
        a.request, "POST", "/api/v1/guilds/", {"name": unique("G"), "open": True}, alice
    )
    assert status == 201
    alice_game = await WsClient.open(f"{a.ws}/ws/game", alice)
    # Bob joins the guild while Alice is connected: her connection must now hear about him.
    status, _ = await asyncio.to_thread(b.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, bob)
    assert status == 200
    await asyncio.sleep(0.3)
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    online = await alice_game.recv_type("player_status", user_id=bob_id)
    assert online["status"] == "online"
    second = await WsClient.open(f"{a.ws}/ws/chat", bob)  # not the first connection: no new online
    assert await alice_game.nothing_of("player_status", 0.4), alice_game.received[-3:]
    await second.close()
    await bob_game.close()
    offline = await alice_game.recv_type("player_status", user_id=bob_id)
    assert offline["status"] == "offline"
    # Bob leaves the guild; his next appearance is not announced to Alice.
    status, _ = await asyncio.to_thread(b.request, "POST", "/api/v1/guilds/leave/", None, bob)
    assert status == 200
    again = await WsClient.open(f"{b.ws}/ws/game", bob)
    assert await alice_game.nothing_of("player_status", 0.5)
    await again.close()
    await alice_game.close()


async def test_registry_records_connections_of_both_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, token = await asyncio.to_thread(a.register, unique("r"))
    clients = [await WsClient.open(f"{a.ws}/ws/game", token), await WsClient.open(f"{b.ws}/ws/world")]
    rows = db(lambda: set(Connection.objects.values_list("instance_id", "endpoint")))

    async def both_recorded() -> bool:  # rows are written in batches, every flush interval
        return {(a.instance_id, "game"), (b.instance_id, "world")} <= await rows()

    await until(both_recorded, timeout=10, every=0.1, what="both connections in the registry")
    for client in clients:
        await client.close()
    ids = {c.established["connection_id"] for c in clients}
    left = db(lambda: set(Connection.objects.filter(id__in=ids).values_list("id", flat=True)))

    async def both_removed() -> bool:
        return await left() == set()

    await until(both_removed, timeout=10, every=0.1, what="both rows removed")
