"""Operations against two real instances sharing a private Redis: health through Redis,
metrics across the cluster, Prometheus, publish to every target, the admin served by one
instance acting on connections held by the other, and the management commands as processes."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest

from realtime.models import Connection
from tests.support.cluster import WsClient
from tests.support.db import db
from tests.support.faults import staff_token
from tests.support.ops import AdminSession, manage
from tests.support.users import PASSWORD, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def until_recorded(*clients: WsClient, timeout: float = 10.0) -> None:
    ids = {client.established["connection_id"] for client in clients}
    for _ in range(int(timeout / 0.1)):
        if await db(lambda: Connection.objects.filter(id__in=ids).count())() == len(ids):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the instances did not record the connections")


# --- health, metrics, Prometheus -----------------------------------------------------------------


async def test_health_round_trips_through_redis_on_every_instance(cluster):
    for server in cluster.servers:
        status, body = await asyncio.to_thread(server.request, "GET", "/api/v1/websocket/health")
        assert status == 200, body
        assert body["checks"]["channel_layer"]["backend"] == "redis"
        assert all(check["status"] == "ok" for check in body["checks"].values())


async def test_metrics_show_this_instance_and_the_whole_cluster(cluster, unique):
    a, b = cluster[0], cluster[1]
    token = (await staff_token(a, unique("staff")))[1]
    status, _ = await asyncio.to_thread(a.request, "GET", "/api/v1/websocket/metrics")
    assert status == 401
    _, player = await asyncio.to_thread(a.register, unique("p"))
    status, _ = await asyncio.to_thread(a.request, "GET", "/api/v1/websocket/metrics", None, player)
    assert status == 403
    clients = [
        await WsClient.open(f"{a.ws}/ws/game"),
        await WsClient.open(f"{a.ws}/ws/game"),
        await WsClient.open(f"{b.ws}/ws/world"),
        await WsClient.open(f"{b.ws}/ws/chat", player),
    ]
    await until_recorded(*clients)

    def cluster_view_complete(body: dict) -> bool:
        # Registry counts cover live instances; with the tests' 0.5 s cleanup interval a busy
        # machine can briefly miss a refresh, so look again until both instances are in.
        counts = body["connections"]["cluster"]["by_endpoint"]
        listed = {row["id"] for row in body["instances"]}
        return {a.instance_id, b.instance_id} <= listed and counts["world"] >= 1 and counts["chat"] >= 1

    for _ in range(50):
        status, on_a = await asyncio.to_thread(a.request, "GET", "/api/v1/websocket/metrics", None, token)
        _, on_b = await asyncio.to_thread(b.request, "GET", "/api/v1/websocket/metrics", None, token)
        assert status == 200, on_a
        if cluster_view_complete(on_a) and cluster_view_complete(on_b):
            break
        await asyncio.sleep(0.2)
    assert on_a["instance"]["id"] == a.instance_id and on_b["instance"]["id"] == b.instance_id
    assert on_a["connections"]["instance"]["by_endpoint"]["game"] >= 2
    assert on_a["connections"]["instance"]["by_endpoint"]["world"] == 0
    assert on_b["connections"]["instance"]["by_endpoint"]["world"] >= 1
    for body in (on_a, on_b):
        cluster_counts = body["connections"]["cluster"]["by_endpoint"]
        assert cluster_counts["game"] >= 2 and cluster_counts["world"] >= 1 and cluster_counts["chat"] >= 1
        listed = {row["id"]: row for row in body["instances"]}
        assert {a.instance_id, b.instance_id} <= set(listed)
        assert listed[a.instance_id]["connections"] >= 2 and listed[b.instance_id]["connections"] >= 2
    for client in clients:
        await client.close()


async def test_prometheus_exposition_on_an_instance(cluster):
    client = await WsClient.open(f"{cluster[1].ws}/ws/world")
    await client.request({"type": "ping"})
    status, text = await asyncio.to_thread(cluster[1].request, "GET", "/metrics")
    assert status == 200
    assert 'rpgrealtime_ws_connections{endpoint="world"}' in text
    assert 'rpgrealtime_ws_frames_in_total{endpoint="world",type="ping"}' in text
    assert "django_http_requests_total_by_method_total" in text
    # The garbage collector was tuned when daphne started (GC_THRESHOLD's default).
    assert 'rpgrealtime_gc_threshold{generation="0"} 2000.0' in text
    frozen = re.search(r"^rpgrealtime_gc_frozen_objects (\S+)$", text, re.M)
    assert frozen and float(frozen.group(1)) > 10_000, "nothing was frozen at start"
    await client.close()


# --- publish, every target, across instances ---------------------------------------------------


async def test_publish_on_one_instance_reaches_every_target_on_the_other(cluster, unique):
    a, b = cluster[0], cluster[1]
    token = (await staff_token(a, unique("staff")))[1]
    member_id, member = await asyncio.to_thread(b.register, unique("m"))
    _, outsider = await asyncio.to_thread(b.register, unique("o"))
    _, guild = await asyncio.to_thread(b.request, "POST", "/api/v1/guilds/", {"name": unique("G")}, member)
    status, party = await asyncio.to_thread(b.request, "POST", "/api/v1/parties/", {"name": unique("P")}, member)
    assert status == 201, party
    game = await WsClient.open(f"{b.ws}/ws/game", member)
    chat = await WsClient.open(f"{b.ws}/ws/chat", member)
    world = await WsClient.open(f"{b.ws}/ws/world")
    anonymous_game = await WsClient.open(f"{b.ws}/ws/game")
    outsider_game = await WsClient.open(f"{b.ws}/ws/game", outsider)

    async def publish(target, message, expected=202):
        status, body = await asyncio.to_thread(
            a.request, "POST", "/api/v1/websocket/publish", {"target": target, "message": message}, token
        )
        assert status == expected, (target, status, body)
        return body

    await publish("game", {"type": "game_state", "key": "season", "value": {"n": 1}})
    for client in (game, anonymous_game, outsider_game):
        assert (await client.recv_type("game_state", key="season"))["value"] == {"n": 1}
    await publish("chat", {"type": "chat_notice", "text": "to every chat"})
    assert (await chat.recv_type("chat_notice"))["text"] == "to every chat"
    await publish("world", {"type": "world_event", "event": "dawn", "zone": None, "message": "Dawn"})
    assert (await world.recv_type("world_event"))["event"] == "dawn"
    # Zone membership is the world feature's; here nobody watches the zone, so nobody gets it.
    await publish("zone:dark_forest", {"type": "world_event", "event": "dragon_spawn", "zone": "dark_forest"})
    assert await world.nothing_of("world_event", 0.5)
    await publish(f"guild:{guild['id']}", {"type": "game_state", "key": "guild", "value": 1})
    assert (await game.recv_type("game_state", key="guild"))["value"] == 1
    await publish(f"guild:{guild['id']}", {"type": "guild_notice", "text": "hear ye"})
    assert (await game.recv_type("guild_notice"))["text"] == "hear ye"
    await publish(f"party:{party['id']}", {"type": "game_state", "key": "party", "value": 2})
    assert (await game.recv_type("game_state", key="party"))["value"] == 2
    body = await publish(f"user:{member_id}", {"type": "achievement", "user_id": member_id, "achievement": "x"})
    assert body == {"status": "accepted", "delivery": "live"}
    assert (await game.recv_type("achievement"))["achievement"] == "x"
    # Only the audiences got them.
    assert await outsider_game.nothing_of("game_state", 0.5)
    assert await anonymous_game.nothing_of("achievement", 0.3)
    for client in (game, chat, world, anonymous_game, outsider_game):
        await client.close()


async def test_publish_failures_over_http(cluster, unique):
    a = cluster[0]
    token = (await staff_token(a, unique("staff")))[1]
    _, player = await asyncio.to_thread(a.register, unique("p"))
    good = {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}}
    cases = [
        (None, good, 401),
        (player, good, 403),
        (token, {"target": "moon", "message": {"type": "x"}}, 400),
        (token, {"target": "user:nope", "message": {"type": "x"}}, 400),
        (token, {"target": "game", "message": {"no_type": 1}}, 400),
        (token, {"target": "game", "message": {"type": "error", "code": "x"}}, 400),
        (token, {"target": "game", "message": "text"}, 400),
        (token, {"target": f"user:{uuid.uuid4()}", "message": {"type": "x"}}, 404),
        (token, {"target": f"guild:{uuid.uuid4()}", "message": {"type": "x"}}, 404),
    ]
    for credentials, body, expected in cases:
        status, answer = await asyncio.to_thread(a.request, "POST", "/api/v1/websocket/publish", body, credentials)
        assert status == expected, (body, status, answer)


# --- admin served by one instance, connections on the other -----------------------------------


@pytest.fixture
async def admin_on_a(cluster, unique):
    staff = await db(make_user)(unique("admin"), is_staff=True, is_superuser=True)
    session = AdminSession(cluster[0])
    await asyncio.to_thread(session.login, staff.username, PASSWORD)
    return session


async def test_admin_disconnect_reaches_connections_on_another_instance(cluster, unique, admin_on_a):
    b = cluster[1]
    _, player = await asyncio.to_thread(b.register, unique("p"))
    chat = await WsClient.open(f"{b.ws}/ws/chat", player)
    anonymous = await WsClient.open(f"{b.ws}/ws/game")
    bystander = await WsClient.open(f"{b.ws}/ws/game")
    await until_recorded(chat, anonymous, bystander)
    status, page = await asyncio.to_thread(admin_on_a.get, f"/admin/realtime/connection/?instance={b.instance_id}")
    assert status == 200 and chat.established["connection_id"] in page
    ids = [chat.established["connection_id"], anonymous.established["connection_id"]]
    page = await asyncio.to_thread(admin_on_a.action, "/admin/realtime/connection/", "disconnect", ids)
    assert "Asked 2 connection(s) to close" in page
    for kicked in (chat, anonymous):
        assert await kicked.closed_with(10) == 4403
        assert any(frame.get("code") == "kicked" for frame in kicked.received)
    assert await bystander.nothing_of("error", 0.5)
    # The registry follows once instance B reports the closes.
    for _ in range(50):
        if not await db(lambda: Connection.objects.filter(id__in=ids).exists())():
            break
        await asyncio.sleep(0.1)
    assert not await db(lambda: Connection.objects.filter(id__in=ids).exists())()
    page = await asyncio.to_thread(
        admin_on_a.action,
        "/admin/realtime/connection/",
        "reconnect_elsewhere",
        [bystander.established["connection_id"]],
    )
    assert await bystander.closed_with(10) == 1001


async def test_admin_dashboard_shows_both_instances_and_announces_everywhere(cluster, admin_on_a):
    a, b = cluster[0], cluster[1]
    watchers = [await WsClient.open(f"{a.ws}/ws/game"), await WsClient.open(f"{b.ws}/ws/game")]
    await until_recorded(*watchers)
    status, page = await asyncio.to_thread(admin_on_a.get, "/admin/realtime/instance/dashboard/")
    assert status == 200 and a.instance_id in page and b.instance_id in page
    status, page = await asyncio.to_thread(
        admin_on_a.post_form, "/admin/realtime/instance/dashboard/", [("message", "Maintenance"), ("level", "info")]
    )
    assert status == 200 and "Announcement sent" in page
    for watcher in watchers:
        assert (await watcher.recv_type("system_announcement"))["message"] == "Maintenance"
        await watcher.close()


# --- commands, as separate processes ------------------------------------------------------------


async def test_announce_command_reaches_both_instances(cluster):
    watchers = [await WsClient.open(f"{cluster[0].ws}/ws/game"), await WsClient.open(f"{cluster[1].ws}/ws/game")]
    result = await asyncio.to_thread(manage, cluster[0], "announce", "Restart in 5 minutes", "--level", "warning")
    assert result.returncode == 0, result.stderr
    assert "every instance" in result.stdout
    for watcher in watchers:
        frame = await watcher.recv_type("system_announcement")
        assert (frame["message"], frame["level"]) == ("Restart in 5 minutes", "warning")
        await watcher.close()
    bad = await asyncio.to_thread(manage, cluster[0], "announce", "hi", "--level", "loud")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    empty = await asyncio.to_thread(manage, cluster[0], "announce", "  ")
    assert empty.returncode == 2 and "empty" in empty.stderr


async def test_ws_stats_and_cleanup_dry_run_as_processes(cluster):
    clients = [await WsClient.open(f"{cluster[0].ws}/ws/game"), await WsClient.open(f"{cluster[1].ws}/ws/world")]
    await until_recorded(*clients)
    # The commands judge liveness with their own cleanup interval: a generous one here, so a
    # busy machine delaying a refresh by a second does not make a live instance look dead.
    generous = {"WEBSOCKET_CLEANUP_INTERVAL": "30"}
    table = await asyncio.to_thread(manage, cluster[0], "ws_stats", env=generous)
    assert table.returncode == 0, table.stderr
    for server in cluster.servers:
        row = next(line for line in table.stdout.splitlines() if line.startswith(server.instance_id))
        assert row.split()[1] == "live"
    data = json.loads((await asyncio.to_thread(manage, cluster[0], "ws_stats", "--json", env=generous)).stdout)
    assert data["by_endpoint"]["game"] >= 1 and data["by_endpoint"]["world"] >= 1
    dry = await asyncio.to_thread(manage, cluster[0], "cleanup_connections", "--dry-run", env=generous)
    assert dry.returncode == 0, dry.stderr
    assert cluster[0].instance_id not in dry.stdout and cluster[1].instance_id not in dry.stdout
    for client in clients:
        await client.close()
