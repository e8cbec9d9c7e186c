"""/ws/game across two real instances sharing a private Redis: presence as guild members come
and go, set_status, achievements, announcements and game state through the publish route."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster import WsClient
from tests.support.faults import staff_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def publish(server, token, target, message):
    return await asyncio.to_thread(
        server.request, "POST", "/api/v1/websocket/publish", {"target": target, "message": message}, token
    )


async def guild_of(server, names):
    """Register players and put them in one new guild; returns [(user_id, token), ...]."""
    members = [await asyncio.to_thread(server.register, name) for name in names]
    status, guild = await asyncio.to_thread(
        server.request, "POST", "/api/v1/guilds/", {"name": names[0], "open": True}, members[0][1]
    )
    assert status == 201
    for _, token in members[1:]:
        status, _ = await asyncio.to_thread(server.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, token)
        assert status == 200
    return members


async def statuses(client, seconds=0.8):
    """player_status frames arriving within `seconds`, as (user_id, status)."""
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            frame = await client.recv(remaining)
        except TimeoutError:
            break
        if frame["type"] == "player_status":
            got.append((frame["user_id"], frame["status"]))
    return got


async def test_presence_follows_guild_members_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    (watcher_id, watcher_token), (member_id, member_token) = await guild_of(a, [unique("w"), unique("m")])
    watcher = await WsClient.open(f"{a.ws}/ws/game", watcher_token)
    await watcher.recv_type("player_status", user_id=watcher_id, status="online")
    on_world_b = await WsClient.open(f"{b.ws}/ws/world", member_token)  # any endpoint counts
    online = await watcher.recv_type("player_status", user_id=member_id, timeout=10)
    assert online["status"] == "online" and online["timestamp"].endswith("Z")
    on_game_a = await WsClient.open(f"{a.ws}/ws/game", member_token)
    await on_world_b.close()
    assert await statuses(watcher) == []  # still connected on the other instance
    await on_game_a.close()
    assert await statuses(watcher, 5) == [(member_id, "offline")]
    await watcher.close()


async def test_set_status_reaches_guild_and_own_connections_on_every_instance(cluster, unique):
    a, b = cluster[0], cluster[1]
    (me_id, me_token), (mate_id, mate_token) = await guild_of(b, [unique("s"), unique("g")])
    _, stranger_token = await asyncio.to_thread(a.register, unique("x"))
    mate = await WsClient.open(f"{a.ws}/ws/game", mate_token)
    stranger = await WsClient.open(f"{a.ws}/ws/game", stranger_token)
    mine_a = await WsClient.open(f"{a.ws}/ws/game", me_token)
    mine_b = await WsClient.open(f"{b.ws}/ws/game", me_token)
    for client in (mate, stranger, mine_a, mine_b):
        await statuses(client, 0.5)
    reply = await mine_b.request({"type": "set_status", "status": "busy"})
    assert reply["type"] == "ack"
    for client in (mate, mine_a):
        assert await statuses(client, 3) == [(me_id, "busy")]
    assert await stranger.nothing_of("player_status", 0.5)
    anonymous = await WsClient.open(f"{a.ws}/ws/game")
    assert (await anonymous.request({"type": "set_status", "status": "away"}))["code"] == "authentication_required"
    for client in (mate, stranger, mine_a, mine_b, anonymous):
        await client.close()


async def test_achievement_reaches_user_and_guild_once_each_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    staff = (await staff_token(a, unique("staff")))[1]
    (me_id, me_token), (_, mate_token) = await guild_of(a, [unique("h"), unique("k")])
    mine_a = await WsClient.open(f"{a.ws}/ws/game", me_token)
    mine_b = await WsClient.open(f"{b.ws}/ws/game", me_token)
    mate_b = await WsClient.open(f"{b.ws}/ws/game", mate_token)
    await asyncio.sleep(0.3)
    status, body = await publish(b, staff, f"user:{me_id}", {"type": "achievement", "achievement": "first_kill"})
    assert (status, body["delivery"]) == (202, "live")
    for client in (mine_a, mine_b, mate_b):
        frame = await client.recv_type("achievement", timeout=10)
        assert (frame["user_id"], frame["achievement"]) == (me_id, "first_kill")
        assert await client.nothing_of("achievement", 0.6)  # exactly once
    for client in (mine_a, mine_b, mate_b):
        await client.close()


async def test_announcements_and_game_state_reach_everyone_and_bad_ones_are_refused(cluster, unique):
    a, b = cluster[0], cluster[1]
    staff = (await staff_token(b, unique("staff")))[1]
    _, token = await asyncio.to_thread(a.register, unique("p"))
    clients = [await WsClient.open(f"{a.ws}/ws/game"), await WsClient.open(f"{b.ws}/ws/game", token)]
    status, body = await publish(b, staff, "game", {"type": "system_announcement", "message": "x", "level": "loud"})
    assert status == 400 and "level" in str(body)
    status, _ = await publish(
        b, staff, "game", {"type": "system_announcement", "message": "Restart soon", "level": "critical"}
    )
    assert status == 202
    status, _ = await publish(a, staff, "game", {"type": "game_state", "key": "season", "value": {"n": 2}})
    assert status == 202
    for client in clients:
        announcement = await client.recv_type("system_announcement", timeout=10)
        assert (announcement["message"], announcement["level"]) == ("Restart soon", "critical")
        state = await client.recv_type("game_state", timeout=10)
        assert (state["key"], state["value"]) == ("season", {"n": 2})
        await client.close()
