"""Operations over HTTP on the in-process layer: health, metrics JSON, Prometheus, publish."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest
from django.db import OperationalError
from django.test import AsyncClient

import realtime.health as health_module
from accounts.models import Guild, Party
from realtime.boot import ensure_runtime
from realtime.features import offline
from realtime.layers import EmbeddedChannelLayer
from realtime.views import publish as publish_module
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.faults import until
from tests.support.users import access_token, make_publisher, make_user

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH = "/api/v1/websocket/health"
METRICS = "/api/v1/websocket/metrics"
PUBLISH = "/api/v1/websocket/publish"


@pytest.fixture
def fast_registry(settings):
    """Registry rows written quickly; liveness generous (a loaded machine must not make this
    instance look dead); heartbeats at their defaults."""
    settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL = 0.1
    settings.WEBSOCKET_CLEANUP_INTERVAL = 5
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def staff_headers() -> dict[str, str]:
    """A staff account allowed to publish (the publish route's permission)."""
    return bearer(access_token(await db(make_publisher)()))


# --- health ------------------------------------------------------------------------------------


async def test_health_is_healthy_with_latencies():
    response = await AsyncClient().get(HEALTH)
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "healthy" and body["draining"] is False
    assert set(body["checks"]) == {"channel_layer", "database", "shared_state"}
    for check in body["checks"].values():
        assert check["status"] == "ok" and isinstance(check["latency_ms"], float)
    assert body["checks"]["channel_layer"]["backend"] == "memory"
    assert response["Cache-Control"] == "no-store"


async def test_health_probe_is_a_real_round_trip_through_the_layer():
    runtime = await ensure_runtime()
    runtime.hub._receiver.cancel()  # the hub stops reading its layer channel
    response = await AsyncClient().get(HEALTH)
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["channel_layer"] == {
        "status": "error",
        "error": "timeout",
        "latency_ms": body["checks"]["channel_layer"]["latency_ms"],
        "backend": "memory",
    }
    assert body["checks"]["database"]["status"] == "ok"


def test_a_sharded_layer_is_healthy_only_when_every_server_is_and_the_log_names_the_failing_ones():
    ok = {"status": "ok", "latency_ms": 0.5}
    slow = {"status": "error", "error": "timeout", "latency_ms": 800.0}
    refused = {"status": "error", "error": "ConnectionError", "latency_ms": 1.0}
    assert health_module._channel_layer_summary([ok]) is ok  # one server: reported as before
    assert health_module._channel_layer_summary([ok, ok]) == {"status": "ok", "latency_ms": 0.5, "shards": [ok, ok]}
    summary = health_module._channel_layer_summary([ok, slow, refused])
    # A refusal says more than a timeout (the watchdog calls only a refusal a Redis outage).
    assert (summary["status"], summary["error"], summary["latency_ms"]) == ("error", "ConnectionError", 800.0)
    failing = health_module.describe_failures({"channel_layer": summary, "database": ok, "shared_state": slow})
    assert failing == "channel_layer=ConnectionError (shard 1, 2), shared_state=timeout"


async def test_health_reports_a_database_failure_without_leaking_details(monkeypatch):
    def broken() -> None:
        raise OperationalError('could not connect to server "db.internal" (10.1.2.3): SELECT secret FROM users')

    monkeypatch.setattr(health_module, "_select_one", broken)
    response = await AsyncClient().get(HEALTH)
    assert response.status_code == 503
    text = response.content.decode()
    assert json.loads(text)["checks"]["database"]["error"] == "OperationalError"
    for leak in ("db.internal", "10.1.2.3", "SELECT", "secret"):
        assert leak not in text


async def test_health_answers_while_the_database_hangs_and_shares_one_check(monkeypatch):
    release = threading.Event()
    calls: list[int] = []
    finished = threading.Event()

    def hanging() -> None:
        calls.append(1)
        release.wait(30)
        finished.set()

    monkeypatch.setattr(health_module, "_select_one", hanging)
    try:
        responses = await asyncio.gather(*(AsyncClient().get(HEALTH) for _ in range(3)))
        # Every answer came while the database call was still stuck, from one shared check.
        assert not finished.is_set()
        assert len(calls) == 1
        for response in responses:
            assert response.status_code == 503
            assert response.json()["checks"]["database"]["error"] == "timeout"
    finally:
        release.set()
    await asyncio.to_thread(finished.wait, 10)


async def test_health_is_unhealthy_while_draining():
    runtime = await ensure_runtime()
    runtime.hub.draining = True
    response = await AsyncClient().get(HEALTH)
    assert response.status_code == 503
    assert response.json()["draining"] is True


async def test_health_only_answers_safe_methods():
    assert (await AsyncClient().post(HEALTH)).status_code == 405
    assert (await AsyncClient().head(HEALTH)).status_code == 200


# --- metrics JSON ------------------------------------------------------------------------------


async def test_metrics_needs_staff():
    client = AsyncClient()
    assert (await client.get(METRICS)).status_code == 401
    player = await db(make_user)()
    assert (await client.get(METRICS, headers=bearer(access_token(player)))).status_code == 403
    assert (await client.get(METRICS, headers=await staff_headers())).status_code == 200


async def test_metrics_can_be_made_public(settings):
    settings.WEBSOCKET_METRICS_PUBLIC = True
    assert (await AsyncClient().get(METRICS)).status_code == 200


async def test_metrics_shape_and_values(fast_registry):
    headers = await staff_headers()
    before = (await AsyncClient().get(METRICS, headers=headers)).json()
    user = await db(make_user)()
    game = await connect("/ws/game", access_token(user))
    world = await connect("/ws/world")
    await game.request({"type": "ping"})
    await game.send("{not json")
    assert (await game.recv_type("error"))["code"] == "invalid_json"
    refused = await connect("/ws/chat", expect_established=False)
    await refused.expect_close()

    async def flushed() -> dict | None:  # the registry is written in batches (every 0.1 s here)
        body = (await AsyncClient().get(METRICS, headers=headers)).json()
        cluster = body["connections"]["cluster"]["by_endpoint"]
        return body if cluster["game"] >= 1 and cluster["world"] >= 1 else None

    after = (await until(flushed, timeout=10, every=0.1, what="the connections in the registry"))[0]

    assert set(after) >= {"instance", "connections", "frames", "errors", "auth_failures", "instances"}
    assert after["instance"]["id"] and after["instance"]["uptime_seconds"] >= 0
    local = after["connections"]["instance"]
    assert local["by_endpoint"]["game"] - before["connections"]["instance"]["by_endpoint"]["game"] == 1
    assert local["by_endpoint"]["world"] - before["connections"]["instance"]["by_endpoint"]["world"] == 1
    assert set(local["by_endpoint"]) == {"game", "chat", "combat", "world"}
    cluster = after["connections"]["cluster"]
    assert cluster["by_endpoint"]["game"] >= 1 and cluster["by_endpoint"]["world"] >= 1
    assert cluster["total"] == sum(cluster["by_endpoint"].values())
    assert after["frames"]["in"]["game"]["ping"] >= 1
    assert after["frames"]["out"]["game"]["connection_established"] >= 1
    assert after["errors"]["game"]["invalid_json"] - before["errors"].get("game", {}).get("invalid_json", 0) == 1
    assert after["auth_failures"] - before["auth_failures"] == 1
    assert after["auth_failures_by_code"]["authentication_required"] >= 1
    mine = [row for row in after["instances"] if row["id"] == after["instance"]["id"]]
    assert mine and mine[0]["connections"] >= 2 and mine[0]["last_seen"]
    await game.close()
    await world.close()


async def test_metrics_count_rate_limit_hits(settings):
    settings.WEBSOCKET_RATE_LIMIT = "1/1"
    headers = await staff_headers()
    before = (await AsyncClient().get(METRICS, headers=headers)).json()["rate_limited_total"]
    client = await connect("/ws/game")
    for _ in range(3):
        await client.send({"type": "ping"})
    assert (await client.recv_type("error"))["code"] == "rate_limited"
    after = (await AsyncClient().get(METRICS, headers=headers)).json()
    assert after["rate_limited_total"] > before
    assert after["rate_limited"]["game"]["connection"] >= 1
    assert after["frames"]["in"]["game"]["rate_limited"] >= 1  # refused frames are still frames in
    await client.close()


async def test_personal_events_count_as_frames_out_of_the_endpoint_that_carried_them():
    headers = await staff_headers()
    user = await db(make_user)()
    game, chat = await connect("/ws/game", access_token(user)), await connect("/ws/chat", access_token(user))
    before = (await AsyncClient().get(METRICS, headers=headers)).json()["frames"]["out"]
    await offline.send_personal(user.pk, {"type": "quest_update", "step": 2})
    for client in (game, chat):
        await client.recv_type("quest_update")
    after = (await AsyncClient().get(METRICS, headers=headers)).json()["frames"]["out"]
    for endpoint in ("game", "chat"):
        sent = after[endpoint]["quest_update"] - before.get(endpoint, {}).get("quest_update", 0)
        assert sent == 1
    assert "user" not in after  # a group's name is not an endpoint
    await game.close()
    await chat.close()


# --- Prometheus ---------------------------------------------------------------------------------


async def test_prometheus_exposition_has_websocket_metrics_with_low_cardinality_labels():
    user = await db(make_user)()
    client = await connect("/ws/game", access_token(user))
    hostile = f"attacker_type_{uuid.uuid4().hex}"
    await client.send({"type": hostile})
    assert (await client.recv_type("error"))["code"] == "unknown_type"
    await client.request({"type": "ping"})
    await connect("/ws/chat", "not-a-jwt", expect_established=False)
    await AsyncClient().post(
        PUBLISH,
        {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}},
        content_type="application/json",
        headers=await staff_headers(),
    )
    await client.recv_type("game_state")
    text = (await AsyncClient().get("/metrics")).content.decode()
    for name in (
        "rpgrealtime_ws_connections{",
        "rpgrealtime_ws_frames_in_total{",
        "rpgrealtime_ws_frames_out_total{",
        "rpgrealtime_ws_errors_total{",
        "rpgrealtime_ws_auth_failures_total{",
        "rpgrealtime_ws_closes_total{",
        "rpgrealtime_ws_broadcast_latency_seconds_bucket{",
        "django_http_requests_total_by_method_total{",  # django-prometheus itself
    ):
        assert name in text, name
    assert 'rpgrealtime_ws_frames_in_total{endpoint="game",type="other"}' in text
    assert hostile not in text
    assert str(user.pk) not in text and user.username not in text
    labels = {
        part.split("=")[0]
        for line in text.splitlines()
        if line.startswith("rpgrealtime_ws_") and "{" in line
        for part in line[line.index("{") + 1 : line.index("}")].split(",")
    }
    assert labels <= {"endpoint", "type", "code", "limit", "kind", "le"}
    await client.close()


# --- publish ------------------------------------------------------------------------------------


async def publish(body, headers=None):
    return await AsyncClient().post(PUBLISH, body, content_type="application/json", headers=headers or {})


async def test_publish_needs_staff():
    event = {"target": "game", "message": {"type": "game_state", "key": "a", "value": 1}}
    assert (await publish(event)).status_code == 401
    player = await db(make_user)()
    assert (await publish(event, bearer(access_token(player)))).status_code == 403
    assert (await publish(event, await staff_headers())).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        {},
        {"target": "game"},
        {"message": {"type": "x"}},
        {"target": "nowhere", "message": {"type": "x"}},
        {"target": "game:extra", "message": {"type": "x"}},
        {"target": "user:", "message": {"type": "x"}},
        {"target": "user:not-a-uuid", "message": {"type": "x"}},
        {"target": "guild:42", "message": {"type": "x"}},
        {"target": "party:", "message": {"type": "x"}},
        {"target": "zone:bad zone!", "message": {"type": "x"}},
        {"target": 7, "message": {"type": "x"}},
        {"target": "game", "message": "hello"},
        {"target": "game", "message": ["type"]},
        {"target": "game", "message": {}},
        {"target": "game", "message": {"type": 5}},
        {"target": "game", "message": {"type": ""}},
        {"target": "game", "message": {"type": "Has Spaces"}},
        {"target": "game", "message": {"type": "x" * 65}},
        {"target": "game", "message": {"type": "error", "code": "forbidden"}},
        {"target": "game", "message": {"type": "connection_established"}},
        {"target": "game", "message": {"type": "ping"}},
        {"target": "game", "message": {"type": "pong"}},
        {"target": "game", "message": {"type": "game_state", "id": "req-1"}},
        {"target": "game", "message": {"type": "system_announcement", "message": "hi", "level": "loud"}},
        {"target": "game", "message": {"type": "system_announcement", "level": "info"}},
    ],
)
async def test_publish_refuses_bad_targets_and_messages(body):
    response = await publish(body, await staff_headers())
    assert response.status_code == 400, response.content


async def test_publish_refuses_an_event_over_the_frame_limit(settings):
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 200
    headers = await staff_headers()
    small = await publish(
        {"target": "game", "message": {"type": "game_state", "key": "season", "value": "x" * 50}}, headers
    )
    assert small.status_code == 202
    big = await publish(
        {"target": "game", "message": {"type": "game_state", "key": "season", "value": "x" * 200}}, headers
    )
    assert big.status_code == 400 and "limited to 200" in big.content.decode()


@pytest.mark.parametrize("target", ["user:{id}", "guild:{id}", "party:{id}", "zone:nowhere"])
async def test_publish_to_something_that_does_not_exist_is_404(target):
    target = target.format(id=uuid.uuid4())
    response = await publish({"target": target, "message": {"type": "x"}}, await staff_headers())
    assert response.status_code == 404


async def test_publish_reaches_every_target():
    headers = await staff_headers()
    guild = await db(Guild.objects.create)(name="Knights")
    party = await db(Party.objects.create)(name="Band")
    member = await db(make_user)(guild=guild, party=party)
    outsider = await db(make_user)()
    token = access_token(member)
    game = await connect("/ws/game", token)
    chat = await connect("/ws/chat", token)
    world = await connect("/ws/world", token)
    anonymous_game = await connect("/ws/game")
    outsider_chat = await connect("/ws/chat", access_token(outsider))
    await world.request({"type": "zone_change", "zone": "dark_forest"})

    async def send(target, message):
        response = await publish({"target": target, "message": message}, headers)
        assert response.status_code == 202, response.content
        return response.json()

    await send("game", {"type": "game_state", "key": "season", "value": {"n": 1}})
    for client in (game, anonymous_game):
        frame = await client.recv_type("game_state")
        assert frame["value"] == {"n": 1} and frame["timestamp"].endswith("Z")
    await send("chat", {"type": "notice", "text": "to chat"})
    for client in (chat, outsider_chat):
        assert (await client.recv_type("notice"))["text"] == "to chat"
    await send("world", {"type": "world_event", "event": "dawn", "zone": None, "message": "Dawn"})
    assert (await world.recv_type("world_event"))["event"] == "dawn"
    await send("zone:dark_forest", {"type": "world_event", "event": "dragon_spawn", "zone": "dark_forest"})
    assert (await world.recv_type("world_event"))["event"] == "dragon_spawn"
    await send(f"guild:{guild.pk}", {"type": "game_state", "key": "guild", "value": 2})
    assert (await game.recv_type("game_state"))["key"] == "guild"
    await send(f"guild:{guild.pk}", {"type": "guild_news", "text": "guild news"})
    assert (await game.recv_type("guild_news"))["text"] == "guild news"
    await send(f"party:{party.pk}", {"type": "game_state", "key": "party", "value": 3})
    assert (await game.recv_type("game_state"))["key"] == "party"
    body = await send(f"user:{member.pk}", {"type": "achievement", "user_id": str(member.pk), "achievement": "a1"})
    assert body["delivery"] == "live"
    assert (await game.recv_type("achievement"))["achievement"] == "a1"
    # Nobody outside an audience got anything meant for it.
    assert await anonymous_game.nothing(0.3)
    assert await outsider_chat.nothing(0.3)
    body = await send(f"user:{outsider.pk}", {"type": "achievement", "user_id": str(outsider.pk), "achievement": "b"})
    assert body["delivery"] == "stored"
    for client in (game, chat, world, anonymous_game, outsider_chat):
        await client.close()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "chat_message", "user": "alice", "content": "send me your password", "channel": "global"},
        {"type": "moderation_event", "action": "ban", "user_id": str(uuid.uuid4())},
        {"type": "player_movement", "x": 1, "y": 1, "zone": "starter_town"},
        {"type": "combat_state", "status": "victory"},
        {"type": "player_status", "status": "online"},
        {"type": "invitation", "kind": "guild"},
        {"type": "notice", "stream": "game", "offset": 99, "epoch": "x"},
    ],
)
async def test_the_servers_own_types_and_fields_cannot_be_published(message):
    client = await connect("/ws/chat", access_token(await db(make_user)()))
    response = await publish({"target": "chat", "message": message}, await staff_headers())
    assert response.status_code == 400, response.content
    assert await client.nothing(0.2)
    await client.close()


async def test_publishing_needs_the_permission_even_for_staff():
    body = {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}}
    plain_staff = bearer(access_token(await db(make_user)(is_staff=True)))
    refused = await publish(body, plain_staff)
    assert refused.status_code == 403 and "realtime.publish_event" in refused.content.decode()
    superuser = bearer(access_token(await db(make_user)(is_staff=True, is_superuser=True)))
    assert (await publish(body, superuser)).status_code == 202
    assert (await publish(body, await staff_headers())).status_code == 202


async def test_publish_overwrites_a_given_timestamp():
    client = await connect("/ws/game")
    message = {"type": "game_state", "key": "t", "value": 0, "timestamp": "1999-01-01T00:00:00.000Z"}
    assert (await publish({"target": "game", "message": message}, await staff_headers())).status_code == 202
    frame = await client.recv_type("game_state")
    assert frame["timestamp"] != "1999-01-01T00:00:00.000Z" and frame["timestamp"].endswith("Z")
    await client.close()


async def test_a_lost_probe_is_sent_again_so_health_recovers_at_once(monkeypatch):
    monkeypatch.setattr(health_module, "ABANDON_AFTER", 30.0)  # recovery must not wait for this
    runtime = await ensure_runtime()
    layer = runtime.hub.layer

    async def lost(group, message):  # e.g. published while Redis restarted: never arrives
        return None

    layer.group_send = layer.group_send_here = lost
    try:
        assert (await AsyncClient().get(HEALTH)).status_code == 503
    finally:
        del layer.group_send, layer.group_send_here
    # The probe in flight is re-sent within PROBE_RESEND_AFTER and now arrives.
    response = await AsyncClient().get(HEALTH)
    assert response.status_code == 200, response.json()


async def test_a_hung_probe_is_abandoned_so_the_next_request_starts_a_fresh_one(monkeypatch):
    monkeypatch.setattr(health_module, "ABANDON_AFTER", 1.2)  # longer than one request's wait
    runtime = await ensure_runtime()
    layer = runtime.hub.layer
    release = asyncio.Event()

    async def hung(group, message):  # a PUBLISH to a frozen Redis
        await release.wait()

    layer.group_send = layer.group_send_here = hung
    try:
        assert (await AsyncClient().get(HEALTH)).status_code == 503
        await asyncio.sleep(0.6)  # 1.4 s in: abandoned
    finally:
        del layer.group_send, layer.group_send_here
    response = await AsyncClient().get(HEALTH)
    assert response.status_code == 200, response.json()
    release.set()


# --- when the channel layer fails ------------------------------------------------------------------


@pytest.fixture
def refusing_layer(monkeypatch):

    async def refuse(self, group, message):
        raise ConnectionError("layer down")

    monkeypatch.setattr(EmbeddedChannelLayer, "group_send", refuse)
    monkeypatch.setattr(EmbeddedChannelLayer, "group_send_here", refuse)


@pytest.fixture
def hanging_layer(monkeypatch):

    async def hang(self, group, message):
        await asyncio.sleep(3600)

    monkeypatch.setattr(EmbeddedChannelLayer, "group_send", hang)
    monkeypatch.setattr(EmbeddedChannelLayer, "group_send_here", hang)
    monkeypatch.setattr(publish_module, "PUBLISH_TIMEOUT", 0.3)


async def test_publish_says_503_when_the_layer_refuses_and_still_reaches_local_connections(refusing_layer):
    client = await connect("/ws/game")
    response = await publish(
        {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}}, await staff_headers()
    )
    assert response.status_code == 503 and "other instances were not reached" in response.json()["detail"]
    assert (await client.recv_type("game_state"))["key"] == "k"
    await client.close()


async def test_publish_says_503_when_the_layer_hangs(hanging_layer):
    response = await publish(
        {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}}, await staff_headers()
    )
    assert response.status_code == 503
