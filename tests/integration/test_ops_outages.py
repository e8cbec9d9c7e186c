"""Operations when things break, each test with its own processes (no shared cluster here, so
no other live instance races to clean up): Redis hanging, an instance killed, the embedded
default reached from another process, Redis behind Sentinel including a failover."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from realtime.models import Connection, Instance
from realtime.runtime import SHUTDOWN_TIMEOUT
from tests.support.cluster import Cluster, RedisServer, ServerProcess, WsClient
from tests.support.db import db
from tests.support.ops import SentinelServer, manage

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def health(server: ServerProcess, timeout: float = 5.0) -> tuple[int, dict, float]:
    """GET health with a client-side bound; returns (status, body, seconds it took)."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{server.http}/api/v1/websocket/health", timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.monotonic() - started


async def until_healthy(server: ServerProcess, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = await asyncio.to_thread(health, server)
        if status == 200:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"still unhealthy: {body}")
        await asyncio.sleep(0.3)


@pytest.fixture
def own_cluster(django_db_blocker):
    started: list[Cluster] = []

    def start(**options) -> Cluster:
        with django_db_blocker.unblock():
            cluster = Cluster(**options)
            started.append(cluster)
            return cluster.start()

    yield start
    for cluster in started:
        if cluster.redis and cluster.redis.process:
            cluster.redis.resume()
        cluster.stop()


async def test_health_answers_quickly_while_redis_hangs_and_recovers(own_cluster):
    cluster = own_cluster(size=1)
    server = cluster[0]
    client = await WsClient.open(f"{server.ws}/ws/game")
    cluster.redis.pause()
    try:
        # The client bound (5 s) would fail the test if the view waited for the frozen Redis.
        status, body, took = await asyncio.to_thread(health, server)
        assert status == 503 and body["status"] == "unhealthy"
        assert body["checks"]["channel_layer"]["error"] == "timeout"
        assert body["checks"]["shared_state"]["error"] == "timeout"
        assert body["checks"]["database"]["status"] == "ok"
        print(f"health answered in {took:.2f} s with Redis frozen")
    finally:
        cluster.redis.resume()
    await until_healthy(server)
    await client.request({"type": "ping"})
    await client.close()


async def test_sigterm_exits_in_bounded_time_with_redis_hanging(own_cluster):
    cluster = own_cluster(size=1)
    server = cluster[0]
    client = await WsClient.open(f"{server.ws}/ws/game")
    await asyncio.sleep(0.5)  # registered
    cluster.redis.pause()
    try:
        code = asyncio.create_task(client.closed_with(SHUTDOWN_TIMEOUT + 20))
        started = time.monotonic()
        # terminate() raises TimeoutExpired if the drain is not bounded.
        exit_code = await asyncio.to_thread(server.terminate, SHUTDOWN_TIMEOUT + 15)
        print(f"exited {time.monotonic() - started:.1f} s after SIGTERM with Redis frozen")
        assert exit_code == 0
        assert await code == 1001
    finally:
        cluster.redis.resume()
    # The registry rows went (they live in the database, which was up).
    assert not await db(Instance.objects.filter(id=server.instance_id).exists)()


async def test_cleanup_connections_removes_what_a_killed_instance_left(own_cluster, unique):
    # Long cleanup interval: the survivor does not clean up on its own during the test.
    cluster = own_cluster(size=2, env={"WEBSOCKET_CLEANUP_INTERVAL": "60"})
    a, b = cluster[0], cluster[1]
    alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(a.register, unique("bob"))
    _, party = await asyncio.to_thread(
        a.request, "POST", "/api/v1/parties/", {"name": unique("P"), "open": True}, alice
    )
    await asyncio.to_thread(a.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, bob)
    watcher = await WsClient.open(f"{a.ws}/ws/game", alice)
    victim = await WsClient.open(f"{b.ws}/ws/game", bob)
    await watcher.recv_type("player_status", user_id=bob_id, status="online")
    for _ in range(50):
        if await db(Connection.objects.filter(instance_id=b.instance_id).count)():
            break
        await asyncio.sleep(0.1)
    b.kill()
    # Time passes: B's row is now far older than three cleanup intervals.
    await db(Instance.objects.filter(id=b.instance_id).update)(last_seen=timezone.now() - timedelta(hours=1))

    dry = await asyncio.to_thread(manage, a, "cleanup_connections", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Would remove {b.instance_id}: 1 connection records, 1 presence entries" in dry.stdout
    assert a.instance_id not in dry.stdout
    assert await db(Connection.objects.filter(instance_id=b.instance_id).count)() == 1

    done = await asyncio.to_thread(manage, a, "cleanup_connections")
    assert done.returncode == 0, done.stderr
    assert "Removed the records of 1 dead instance(s)." in done.stdout
    # The same cleanup as a surviving instance: presence purged and the departure announced.
    offline = await watcher.recv_type("player_status", timeout=10, user_id=bob_id)
    assert offline["status"] == "offline"
    assert await db(Connection.objects.filter(instance_id=b.instance_id).count)() == 0
    assert not await db(Instance.objects.filter(id=b.instance_id).exists)()
    again = await asyncio.to_thread(manage, a, "cleanup_connections", "--dry-run")
    assert "No dead instances" in again.stdout
    await watcher.close()
    del victim


async def test_announce_reaches_the_embedded_server_from_another_process(own_cluster):
    cluster = own_cluster(size=1, redis=False, env={"WEBSOCKET_OUTBOX_POLL_INTERVAL": "0.2"})
    server = cluster[0]
    status, body, _ = await asyncio.to_thread(health, server)
    assert status == 200 and body["checks"]["channel_layer"]["backend"] == "memory"
    client = await WsClient.open(f"{server.ws}/ws/game")
    result = await asyncio.to_thread(manage, server, "announce", "Hello from a command", "--level", "critical")
    assert result.returncode == 0, result.stderr
    assert "Queued" in result.stdout
    frame = await client.recv_type("system_announcement", timeout=10)
    assert (frame["message"], frame["level"]) == ("Hello from a command", "critical")
    await client.close()


async def test_instances_behind_sentinel_broadcast_and_survive_a_failover(django_db_blocker):
    master = RedisServer().start()
    replica = RedisServer().start()
    sentinel = None
    servers: list[ServerProcess] = []
    try:
        redis.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
        sentinel = SentinelServer(master.port).start()
        env = {"REDIS_SENTINELS": f"127.0.0.1:{sentinel.port}", "REDIS_SENTINEL_MASTER": SentinelServer.MASTER}
        with django_db_blocker.unblock():
            servers = [ServerProcess(f"sent{i}", redis=None, env=env).start() for i in range(2)]
        a, b = servers
        for server in servers:
            body = await until_healthy(server)
            assert body["checks"]["channel_layer"]["backend"] == "redis"
        watcher = await WsClient.open(f"{b.ws}/ws/game")
        result = await asyncio.to_thread(manage, a, "announce", "through sentinel")
        assert result.returncode == 0, result.stderr
        assert (await watcher.recv_type("system_announcement"))["message"] == "through sentinel"

        # The master dies; Sentinel promotes the replica; the instances follow it.
        master.stop()
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(sentinel.master_port_now) != replica.port:
            assert time.monotonic() < deadline, "sentinel did not fail over"
            await asyncio.sleep(0.5)
        for server in servers:
            await until_healthy(server, timeout=30)
        late = await WsClient.open(f"{b.ws}/ws/game")
        deadline = time.monotonic() + 30
        while True:  # the first broadcasts after the switch may race the re-subscription
            result = await asyncio.to_thread(manage, a, "announce", "after failover")
            assert result.returncode == 0, result.stderr
            try:
                frame = await late.recv_type("system_announcement", timeout=2)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "broadcasts did not resume after the failover"
        assert frame["message"] == "after failover"
        # A connection opened before the failover is still subscribed: it got it too.
        assert (await watcher.recv_type("system_announcement", message="after failover"))["level"] == "info"
        await late.close()
        await watcher.close()
    finally:
        for server in servers:
            server.kill()
        if sentinel:
            sentinel.stop()
        replica.stop()
        master.stop()
