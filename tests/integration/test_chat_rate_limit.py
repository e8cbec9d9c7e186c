"""CHAT_RATE_LIMIT across instances: one user flooding from two connections on two instances.

Its own cluster (with a small limit), so this module must not use the shared `cluster` fixture.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.cluster import Cluster, WsClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LIMIT = 4


async def test_flood_over_two_instances_hits_the_per_user_limit(django_db_blocker, unique):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env={"CHAT_RATE_LIMIT": str(LIMIT)}).start()
    try:
        a, b = cluster[0], cluster[1]
        _, token = await asyncio.to_thread(a.register, unique("flood"))
        _, other = await asyncio.to_thread(b.register, unique("calm"))
        on_a = await WsClient.open(f"{a.ws}/ws/chat", token)
        on_b = await WsClient.open(f"{b.ws}/ws/chat", token)
        replies = []
        for n in range(2 * LIMIT):
            client = on_a if n % 2 == 0 else on_b
            replies.append(await client.request({"type": "chat_message", "channel": "global", "content": f"spam {n}"}))
        kinds = [r["type"] if r["type"] == "ack" else r["code"] for r in replies]
        assert kinds.count("ack") == LIMIT and kinds.count("rate_limited") == LIMIT, kinds
        limited = next(r for r in replies if r["type"] == "error")
        assert limited["details"] == {"limit": LIMIT, "window_seconds": 10}
        # Somebody else is not affected.
        calm = await WsClient.open(f"{b.ws}/ws/chat", other)
        assert (await calm.request({"type": "chat_message", "channel": "global", "content": "hi"}))["type"] == "ack"
        for client in (on_a, on_b, calm):
            await client.close()
    finally:
        cluster.stop()
