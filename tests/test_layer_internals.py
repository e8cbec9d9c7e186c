"""Fail loudly when channels-redis changes the pub/sub internals `realtime/layer_subscriptions.py`
uses to subscribe many groups in one command, and check that those subscriptions really carry
broadcasts (a real Redis)."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from realtime.layer_subscriptions import group_add_many, group_discard_many
from tests.support.cluster import RedisServer


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


async def test_many_groups_subscribed_in_one_go_receive_their_broadcasts_and_stop_when_discarded(redis_server):
    layer = RedisPubSubChannelLayer(hosts=[{"address": redis_server.url}], prefix="internals")
    sender = RedisPubSubChannelLayer(hosts=[{"address": redis_server.url}], prefix="internals")
    try:
        inner = layer._get_layer()
        for name in ("channels", "groups", "_get_shard", "_get_group_channel_name"):
            assert hasattr(inner, name), f"channels-redis: the pub/sub loop layer has no {name} any more"
        channel = await layer.new_channel("hub.")
        shard = inner._get_shard(inner._get_group_channel_name("g0"))
        for name in ("_lock", "_subscribed_to", "_ensure_redis", "_ensure_receiver"):
            assert hasattr(shard, name), f"channels-redis: the shard connection has no {name} any more"

        groups = [f"g{n}" for n in range(2500)]  # more than one command's chunk
        await group_add_many(layer, groups, channel)
        assert shard._pubsub is not None and len(shard._subscribed_to) >= 2500
        await asyncio.sleep(0.2)  # the subscriptions are confirmed
        await sender.group_send("g2499", {"type": "x", "n": 1})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 1

        await group_discard_many(layer, groups[1:], channel)
        assert inner._get_group_channel_name("g2499") not in inner.groups
        await asyncio.sleep(0.2)
        await sender.group_send("g2499", {"type": "x", "n": 2})
        await sender.group_send("g0", {"type": "x", "n": 3})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["n"] == 3  # g2499's never came
    finally:
        await layer.flush()
        await sender.flush()
