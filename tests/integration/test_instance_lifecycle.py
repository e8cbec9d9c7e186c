"""Instance death and graceful shutdown with real processes. Each test starts its own cluster,
and this module uses no shared one, so no other live instance races to clean up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from realtime.models import Connection, Instance
from tests.support.cluster import Cluster, ServerProcess, WsClient
from tests.support.db import db
from tests.support.faults import until, until_logged

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@contextlib.asynccontextmanager
async def draining_with_redis_frozen(django_db_blocker) -> AsyncIterator[ServerProcess]:
    """One instance told to stop (SIGTERM) while its Redis is frozen: the drain waits out its
    Redis bound, so the instance stays up, draining, for several seconds."""
    with django_db_blocker.unblock():
        cluster = Cluster(size=1).start()
    try:
        server = cluster[0]
        cluster.redis.pause()
        server.process.terminate()
        await until_logged(server, "draining instance")
        yield server
    finally:
        cluster.redis.resume()
        cluster.stop()


async def test_killed_instance_is_cleaned_up_by_the_survivor(django_db_blocker, unique):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2).start()
    try:
        a, b = cluster[0], cluster[1]
        alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
        bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
        status, party = await asyncio.to_thread(
            a.request, "POST", "/api/v1/parties/", {"name": "party", "open": True}, alice
        )
        await asyncio.to_thread(b.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, bob)
        watcher = await WsClient.open(f"{a.ws}/ws/game", alice)
        victim = await WsClient.open(f"{b.ws}/ws/game", bob)
        await watcher.recv_type("player_status", user_id=bob_id, status="online")
        rows_of_b = db(Connection.objects.filter(instance_id=b.instance_id).count)
        await until(rows_of_b, timeout=10, every=0.1, what="b's registry row (written in batches)")
        assert await rows_of_b() == 1
        b.kill()
        # Dead after 3 cleanup intervals; the survivor announces it, then removes its rows.
        offline = await watcher.recv_type("player_status", timeout=8, user_id=bob_id)
        assert offline["status"] == "offline"

        async def rows_gone() -> bool:
            return await rows_of_b() == 0

        await until(rows_gone, timeout=10, every=0.1, what="b's registry rows removed")
        assert not await db(Instance.objects.filter(id=b.instance_id).exists)()
        # The victim's client can reconnect elsewhere.
        moved = await WsClient.open(f"{a.ws}/ws/game", bob)
        await moved.close()
        await watcher.close()
        del victim
    finally:
        cluster.stop()


async def test_sigterm_closes_with_1001_and_removes_records(django_db_blocker, unique):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2).start()
    try:
        a, b = cluster[0], cluster[1]
        alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
        bob_id, bob = await asyncio.to_thread(a.register, unique("bob"))
        status, party = await asyncio.to_thread(
            a.request, "POST", "/api/v1/parties/", {"name": "party", "open": True}, alice
        )
        await asyncio.to_thread(a.request, "POST", f"/api/v1/parties/{party['id']}/join/", None, bob)
        watcher = await WsClient.open(f"{a.ws}/ws/game", alice)
        leaving = await WsClient.open(f"{b.ws}/ws/game", bob)
        await watcher.recv_type("player_status", user_id=bob_id, status="online")
        await asyncio.sleep(0.5)
        code_task = asyncio.create_task(leaving.closed_with(15))
        exit_code = await asyncio.to_thread(b.terminate, 15)
        assert await code_task == 1001
        assert exit_code == 0
        offline = await watcher.recv_type("player_status", timeout=5, user_id=bob_id)
        assert offline["status"] == "offline"
        assert await db(Connection.objects.filter(instance_id=b.instance_id).count)() == 0
        assert not await db(Instance.objects.filter(id=b.instance_id).exists)()
        await watcher.close()
    finally:
        cluster.stop()


async def test_a_connection_refused_while_draining_gets_1001(django_db_blocker):
    # daphne still answers handshakes while the instance drains: the refusal must close with
    # 1001, which daphne's own close path cannot send (autobahn refuses it from a server, the
    # client would see 1006).
    async with draining_with_redis_frozen(django_db_blocker) as server:
        refused = await WsClient.open(f"{server.ws}/ws/game", expect_established=False)
        assert (await refused.recv())["code"] == "server_shutting_down"
        assert await refused.closed_with(5) == 1001


def logins_until_refused(server: ServerProcess) -> list[int]:
    """Failed logins back to back until the server stops answering; the statuses it answered."""
    statuses = []
    while True:
        try:
            statuses.append(server.request("POST", "/api/v1/auth/token/", {"username": "x", "password": "y"})[0])
        except OSError:  # refused or reset: the listener is gone
            return statuses


async def test_http_requests_in_flight_at_sigterm_are_answered_and_the_process_exits(django_db_blocker):
    # Requests keep arriving while the instance drains, so some are running on Django's worker
    # thread when the event loop stops. Such a thread used to wait on the stopped loop for ever,
    # and the process never exited.
    async with draining_with_redis_frozen(django_db_blocker) as server:
        answered = asyncio.gather(*(asyncio.to_thread(logins_until_refused, server) for _ in range(3)))
        assert await asyncio.to_thread(server.process.wait, 30) == 0
        statuses = [status for each in await answered for status in each]
        assert statuses and set(statuses) <= {401, 429}, statuses
