"""2,000 authenticated clients connecting and then leaving at once, over two real instances.

Every client joins its own user group, global chat and its endpoint's groups; after the mass
disconnect no Redis subscription for a user group may remain, no registry row may remain, and no
server may log an error (channels-redis group_discard failing on redis-py's pool limit was the
trap this guards against).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis
import websockets
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from realtime.models import Connection
from tests.support.cluster import Cluster
from tests.support.db import db

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 2000


def _make_users(count: int) -> list[str]:
    User = get_user_model()
    users = [User(username=f"mass{i}") for i in range(count)]
    for user in users:
        user.set_unusable_password()
    User.objects.bulk_create(users, batch_size=500)
    return [str(AccessToken.for_user(user)) for user in User.objects.filter(username__startswith="mass")]


def _user_group_subscriptions(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return len(client.pubsub_channels("rpgrt__group__user.*"))
    finally:
        client.close()


async def _open(url: str, semaphore: asyncio.Semaphore):
    async with semaphore:
        connection = await websockets.connect(url, open_timeout=60, ping_interval=None)
        first = await asyncio.wait_for(connection.recv(), 60)
        assert '"connection_established"' in first, first
        return connection


async def test_two_thousand_clients_join_and_leave_without_leftovers(django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env={"WEBSOCKET_MAX_CONNECTIONS_PER_USER": "0"}).start()
    try:
        tokens = await db(_make_users)(CLIENTS)
        semaphore = asyncio.Semaphore(100)
        # Alternate instances, and endpoints within each instance.
        urls = [f"{cluster[i % 2].ws}/ws/{('chat', 'game')[i // 2 % 2]}?token={t}" for i, t in enumerate(tokens)]
        connections = await asyncio.gather(*[_open(url, semaphore) for url in urls])
        assert len(connections) == CLIENTS
        # Groups are joined right after connection_established, before the client's first frame.
        subscribed = 0
        for _ in range(100):
            subscribed = await asyncio.to_thread(_user_group_subscriptions, cluster.redis.url)
            if subscribed == CLIENTS:
                break
            await asyncio.sleep(0.1)
        assert subscribed == CLIENTS

        # Everyone leaves at the same moment.
        await asyncio.gather(*[connection.close() for connection in connections])

        remaining_subscriptions = remaining_rows = None
        for _ in range(100):
            remaining_subscriptions = await asyncio.to_thread(_user_group_subscriptions, cluster.redis.url)
            remaining_rows = await db(Connection.objects.count)()
            if remaining_subscriptions == 0 and remaining_rows == 0:
                break
            await asyncio.sleep(0.2)
        assert remaining_subscriptions == 0
        assert remaining_rows == 0
        for server in cluster.servers:
            assert server.alive()
            log = server.log_text()
            assert "ERROR" not in log and "Traceback" not in log, server.log_tail()
    finally:
        cluster.stop()
        with contextlib.suppress(Exception):
            await db(get_user_model().objects.filter(username__startswith="mass").delete)()
