"""The channel layer on two Redis servers (CHANNEL_LAYER_REDIS_URLS) with real daphne instances.

Three private redis-servers: two shards of the channel layer and one for the shared state, so
each test can also see that everything lands where it belongs (a stream next to its group's
pub/sub channel, presence on the shared-state server only). The users, the guild and the zone
are chosen so that their groups hash to the shard each test needs: broadcasts of groups on
either shard cross instances, streams stay gap-free and resumable on every instance, health
reports each shard, and with one shard stopped health says 503 while the groups of the other
keep working — until the stopped one returns. Lines starting with FIGURE are the measurements
quoted in docs/reliability.md (run with -s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from jsonschema import Draft202012Validator

from accounts.models import Guild
from realtime.models.world import Zone
from realtime.shards import LayerShards
from realtime.views.openapi import HEALTH
from tests.support.cluster import Cluster, ServerProcess, WsClient
from tests.support.db import db
from tests.support.faults import health, presence_of, redis_at, staff_token, until, until_health, until_logged
from tests.support.users import access_token, make_user
from tests.support.world import create_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# What the instances' settings make of two CHANNEL_LAYER_REDIS_URLS (prefix: settings/base.py).
LAYOUT = LayerShards(count=2, prefix="rpgrt")
GLOBAL = LAYOUT.of("chat.global")
OTHER = 1 - GLOBAL


@pytest.fixture(scope="module")
def sharded(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        running = Cluster(size=2, layer_shards=2).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
async def zones():
    await db(create_default_zones)()


def chosen(shard: int, group_of: Callable[[str], str]) -> str:
    """A fresh id whose group the layer puts on `shard`."""
    return next(value for value in iter(lambda: str(uuid.uuid4()), "") if LAYOUT.of(group_of(value)) == shard)


def _player(shard: int, guild: Guild | None) -> tuple[str, str]:
    user = make_user(id=uuid.UUID(chosen(shard, lambda user_id: f"user.{user_id}")), guild=guild)
    return str(user.pk), access_token(user)


def _guild(shard: int) -> Guild:
    guild_id = chosen(shard, lambda value: f"chat.guild.{value}")
    return Guild.objects.create(id=guild_id, name=f"shard{shard}-{guild_id[:8]}", open=True)


def _zone(shard: int) -> str:
    """A zone whose world group is on `shard` (created here: instances find it on first use)."""
    name = next(f"shard{shard}_{n}" for n in range(1000) if LAYOUT.of(f"world.zone.shard{shard}_{n}") == shard)
    Zone.objects.get_or_create(name=name, defaults={"max_x": 1000, "max_y": 1000, "spawn_x": 10, "spawn_y": 10})
    return name


async def chat(server: ServerProcess, token: str) -> WsClient:
    client = await WsClient.open(f"{server.ws}/ws/chat", token)
    await client.request({"type": "ping"})  # not resuming: live frames flow at once
    return client


async def watcher(server: ServerProcess, zone: str) -> WsClient:
    client = await WsClient.open(f"{server.ws}/ws/world")
    changed = await client.request({"type": "zone_change", "zone": zone}, timeout=10)
    assert changed["type"] == "zone_changed", changed
    return client


async def publish(server: ServerProcess, staff: str, target: str, message: dict) -> dict:
    status, body = await asyncio.to_thread(
        server.request, "POST", "/api/v1/websocket/publish", {"target": target, "message": message}, staff
    )
    assert status == 202, (status, body)
    return body


def achievement(user_id: str, name: str) -> dict:
    return {"type": "achievement", "user_id": user_id, "achievement": name}


def holds(port: int, key: str) -> bool:
    with redis_at(port) as client:
        return bool(client.exists(key))


def probe_channels(port: int) -> list[str]:
    with redis_at(port) as client:
        return client.pubsub_channels("rpgrt__group__probe.*")


async def close_all(*clients: WsClient) -> None:
    for client in clients:
        await client.close()


def test_the_chosen_groups_cover_both_shards():
    assert {LAYOUT.of("chat.global"), LAYOUT.of("game.all")} == {0, 1}  # the fixed groups alone already do
    assert LAYOUT.of(LAYOUT.group_on("probe.x", 0)) == 0 and LAYOUT.of(LAYOUT.group_on("probe.x", 1)) == 1


async def test_broadcasts_of_groups_on_either_shard_reach_the_other_instance(sharded, unique):
    a, b = sharded[0], sharded[1]
    staff = (await staff_token(a, unique("staff")))[1]
    guild = await db(_guild)(OTHER)  # guild chat on the shard global chat is not on
    (alice_id, alice), (bob_id, bob) = await db(_player)(0, guild), await db(_player)(1, guild)
    alice_chat, bob_chat = await chat(a, alice), await chat(b, bob)

    await alice_chat.send({"type": "chat_message", "channel": "global", "content": "hello all"})
    heard = await bob_chat.recv_type("chat_message", channel="global", timeout=10)
    assert (heard["content"], heard["stream"]) == ("hello all", "chat:global")
    await bob_chat.send({"type": "chat_message", "channel": "guild", "content": "hello guild"})
    heard = await alice_chat.recv_type("chat_message", channel="guild", timeout=10)
    assert (heard["content"], heard["stream"]) == ("hello guild", f"chat:guild:{guild.pk}")

    # Personal events: one user's group on each shard, connected to the other instance.
    games = {
        user_id: await WsClient.open(f"{b.ws}/ws/game", token) for user_id, token in ((alice_id, alice), (bob_id, bob))
    }
    for user_id, client in games.items():
        assert (await publish(a, staff, f"user:{user_id}", achievement(user_id, f"a-{user_id}")))["delivery"] == "live"
        assert (await client.recv_type("achievement", achievement=f"a-{user_id}", timeout=10))["user_id"] == user_id

    # World events: one zone on each shard, watched on the other instance.
    zones = {shard: await db(_zone)(shard) for shard in (0, 1)}
    watchers = {shard: await watcher(b, zone) for shard, zone in zones.items()}
    for shard, zone in zones.items():
        await publish(a, staff, f"zone:{zone}", {"type": "world_event", "event": f"storm-{shard}", "message": "!"})
        event = await watchers[shard].recv_type("world_event", timeout=10)
        assert (event["event"], event["zone"], event["stream"]) == (f"storm-{shard}", zone, f"world:{zone}")
    await close_all(alice_chat, bob_chat, *games.values(), *watchers.values())


async def test_streams_on_both_shards_stay_gap_free_and_resume_on_the_other_instance(sharded, unique):
    a, b = sharded[0], sharded[1]
    guild = await db(_guild)(OTHER)
    streams = {"chat:global": "global", f"chat:guild:{guild.pk}": "guild"}
    reader_id, reader_token = await db(_player)(0, guild)
    readers = [await chat(a, reader_token), await chat(b, (await db(_player)(1, guild))[1])]
    start = {name: readers[0].established["streams"][name] for name in streams}
    writers = [await chat(server, (await db(_player)(n % 2, guild))[1]) for n, server in enumerate((a, b, a, b))]
    per_writer = 15

    async def write(client: WsClient, tag: int) -> None:
        for n in range(per_writer):
            for channel in streams.values():
                await client.send({"type": "chat_message", "channel": channel, "content": f"w{tag}-{n}"})
            await asyncio.sleep(0.002)

    await asyncio.gather(*(write(client, tag) for tag, client in enumerate(writers)))
    total = per_writer * len(writers)
    for reader in readers:
        frames = [await reader.recv_type("chat_message", timeout=15) for _ in range(total * len(streams))]
        for name, channel in streams.items():
            offsets = [f["offset"] for f in frames if f["channel"] == channel]
            assert offsets == list(range(start[name]["offset"] + 1, start[name]["offset"] + total + 1)), name
            assert {f["epoch"] for f in frames if f["channel"] == channel} == {start[name]["epoch"]}

    # Each stream is kept on its group's shard, nowhere else; presence only on the shared state.
    for name, channel in streams.items():
        group = "chat.global" if channel == "global" else f"chat.guild.{guild.pk}"
        holders = [n for n, shard in enumerate(sharded.layer_redis) if holds(shard.port, f"rpgrt:stream:{name}")]
        assert holders == [LAYOUT.of(group)], name
        assert not holds(sharded.redis.port, f"rpgrt:stream:{name}")
    assert presence_of(sharded.redis.port, reader_id)
    assert not any(presence_of(s.port, reader_id) for s in sharded.layer_redis)

    # The reader leaves instance a, misses frames on both shards, and resumes on instance b.
    seen = {name: {"offset": start[name]["offset"] + total, "epoch": start[name]["epoch"]} for name in streams}
    await readers[0].close()
    for n in range(3):
        for channel in streams.values():
            await writers[1].request({"type": "chat_message", "channel": channel, "content": f"missed {n}"})
    back = await WsClient.open(f"{b.ws}/ws/chat", reader_token)
    reply = await back.request({"type": "resume", "streams": seen})
    for name, channel in streams.items():
        replayed = [f for f in back.received if f.get("type") == "chat_message" and f["channel"] == channel]
        assert [f["content"] for f in replayed] == [f"missed {n}" for n in range(3)], name
        assert [f["offset"] for f in replayed] == [seen[name]["offset"] + n for n in (1, 2, 3)]
        assert reply["streams"][name] == {"recovered": True, "missed": 3, **back.established["streams"][name]}
    await close_all(back, readers[1], *writers)


async def test_health_reports_each_shard(sharded):
    for server in sharded.servers:
        status, body = await asyncio.to_thread(health, server)
        assert status == 200, body
        Draft202012Validator(HEALTH).validate(body)  # as the OpenAPI document says
        layer = body["checks"]["channel_layer"]
        assert layer["status"] == "ok" and layer["backend"] == "redis"
        assert [shard["status"] for shard in layer["shards"]] == ["ok", "ok"]
        assert all(isinstance(shard["latency_ms"], float) for shard in layer["shards"])
    # Each instance probes each shard through a group of its own there.
    probes = [probe_channels(shard.port) for shard in sharded.layer_redis]
    assert [len(channels) for channels in probes] == [len(sharded.servers)] * 2, probes


async def test_with_one_shard_stopped_health_fails_and_the_other_shard_carries_on(sharded, unique):
    """Last in the module: it stops a shard (and starts it again, empty)."""
    a, b = sharded[0], sharded[1]
    staff = (await staff_token(a, unique("staff")))[1]
    guild = await db(_guild)(OTHER)
    (_, alice), (bob_id, bob) = await db(_player)(OTHER, guild), await db(_player)(GLOBAL, guild)
    alice_chat, bob_chat = await chat(a, alice), await chat(b, bob)
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    zone = await db(_zone)(GLOBAL)
    zone_watcher = await watcher(b, zone)

    sharded.layer_redis[OTHER].stop()
    for server in (a, b):
        unhealthy_after = await until_health(server, 503, timeout=10)
        body = (await asyncio.to_thread(health, server))[1]
        Draft202012Validator(HEALTH).validate(body)
        layer = body["checks"]["channel_layer"]
        assert layer["status"] == "error" and layer["error"] == "ConnectionError", layer
        assert [shard["status"] for shard in layer["shards"]] == ["error" if n == OTHER else "ok" for n in (0, 1)]
        assert body["checks"]["shared_state"]["status"] == "ok"

    # Global chat, a personal event and a world event on the shard that still runs.
    await alice_chat.send({"type": "chat_message", "channel": "global", "content": "still here"})
    assert (await bob_chat.recv_type("chat_message", channel="global", timeout=10))["content"] == "still here"
    assert (await publish(a, staff, f"user:{bob_id}", achievement(bob_id, "survivor")))["delivery"] == "live"
    await bob_game.recv_type("achievement", achievement="survivor", timeout=10)
    await publish(a, staff, f"zone:{zone}", {"type": "world_event", "event": "quake", "message": "!"})
    assert (await zone_watcher.recv_type("world_event", timeout=10))["event"] == "quake"
    # Health names the shard in the log; each instance's watchdog counts a shard down as a Redis
    # outage (it probes every second, so wait for both before the shard comes back).
    for server in (a, b):
        # The first failing check names the shard; it may have timed out rather than been refused.
        for line in (rf"health: unhealthy \(channel_layer=\w+ \(shard {OTHER}\)\)", r"redis unavailable \("):
            await until_logged(server, line, timeout=5)

    # The stopped shard comes back empty: health recovers and its groups carry broadcasts again.
    sharded.layer_redis[OTHER].start()
    for server in (a, b):
        healthy_after = await until_health(server, 200, timeout=20)
        await until_logged(server, "redis available again", timeout=5)

    async def guild_chat_crosses() -> bool:
        await bob_chat.send({"type": "chat_message", "channel": "guild", "content": "back"})
        try:
            await alice_chat.recv_type("chat_message", channel="guild", content="back", timeout=1)
        except TimeoutError:
            return False
        return True

    crossing_after = (
        await until(guild_chat_crosses, timeout=10, what="guild chat across instances after the restart")
    )[1]
    print(f"FIGURE shard_stopped unhealthy_after={unhealthy_after:.2f}", end=" ")
    print(f"healthy_after_restart={healthy_after:.2f} guild_chat_after_that={crossing_after:.2f}")
    await close_all(alice_chat, bob_chat, bob_game, zone_watcher)
