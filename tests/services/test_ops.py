"""Operations below the HTTP layer: Redis/Sentinel configuration, the outbox, presence of
instances in both shared-state implementations, the cluster overview."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from channels_redis.utils import create_pool
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from redis.asyncio.sentinel import SentinelConnectionPool

from realtime import outbox
from realtime.features import monitoring
from realtime.layers import EmbeddedChannelLayer
from realtime.models import Connection, Instance, OutboxMessage
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore
from rpgrealtime.env import Env
from rpgrealtime.redis_config import channel_layer_hosts, redis_settings_from_env
from tests.support.cluster import ROOT, RedisServer
from tests.support.db import db

REDIS_VARIABLES = (
    "REDIS_URL",
    "REDIS_PASSWORD",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_DB",
    "REDIS_MAX_CONNECTIONS",
)


@pytest.fixture
def redis_env(monkeypatch):
    for name in REDIS_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def configure(**values: str):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return redis_settings_from_env(Env())

    return configure


# --- Redis and Sentinel configuration ----------------------------------------------------------


def test_no_redis_means_embedded(redis_env):
    assert redis_env() is None


def test_single_redis_url(redis_env):
    config = redis_env(REDIS_URL="redis://cache:6379/2", REDIS_PASSWORD="pw")
    assert channel_layer_hosts(config) == [
        {"address": "redis://cache:6379/2", "max_connections": 500, "password": "pw"}
    ]


def test_sentinel_configuration_builds_a_sentinel_pool_for_the_channel_layer(redis_env):

    config = redis_env(
        REDIS_SENTINELS="s1:26379, s2:26380",
        REDIS_SENTINEL_MASTER="mymaster",
        REDIS_PASSWORD="master-secret",
        REDIS_DB="3",
    )
    assert config["sentinels"] == [("s1", 26379), ("s2", 26380)]
    (host,) = channel_layer_hosts(config)
    assert host["master_name"] == "mymaster" and host["db"] == 3 and host["password"] == "master-secret"
    pool = create_pool(host)  # what channels-redis does with it; nothing connects yet
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "master-secret" and pool.connection_kwargs["db"] == 3
    assert [s.connection_pool.connection_kwargs["host"] for s in pool.sentinel_manager.sentinels] == ["s1", "s2"]
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "master-secret"


def test_sentinels_may_have_their_own_password_or_none(redis_env):
    own = redis_env(
        REDIS_SENTINELS="s1:26379", REDIS_SENTINEL_MASTER="m", REDIS_PASSWORD="a", REDIS_SENTINEL_PASSWORD="b"
    )
    assert channel_layer_hosts(own)[0]["sentinel_kwargs"] == {"password": "b"}
    none = redis_env(REDIS_SENTINEL_PASSWORD="")
    assert none["sentinel_password"] is None and channel_layer_hosts(none)[0]["sentinel_kwargs"] is None
    assert channel_layer_hosts(none)[0]["password"] == "a"


def test_sentinel_configuration_builds_the_shared_state_client(redis_env):
    config = redis_env(
        REDIS_SENTINELS="s1:26379", REDIS_SENTINEL_MASTER="mymaster", REDIS_PASSWORD="a", REDIS_SENTINEL_PASSWORD="b"
    )
    state = RedisStore.from_settings(config)
    pool = state.redis.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "a" and pool.connection_kwargs["socket_timeout"] == 5
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["password"] == "b" and sentinel_kwargs["socket_timeout"] == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "s1", "REDIS_SENTINEL_MASTER": "m"}, "host:port"),
        ({"REDIS_SENTINELS": "s1:port", "REDIS_SENTINEL_MASTER": "m"}, "host:port"),
    ],
)
def test_bad_sentinel_configuration_says_what_to_fix(redis_env, values, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_env(**values)


def settings_in_subprocess(**env: str) -> dict:
    script = (
        "import json; from django.conf import settings; "
        "print(json.dumps({'layers': settings.CHANNEL_LAYERS, 'caches': settings.CACHES}, default=str))"
    )
    clean = {
        k: v for k, v in os.environ.items() if k not in REDIS_VARIABLES and not k.startswith(("DJANGO_", "PYTEST"))
    }
    clean.update({"DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base", "DEBUG": "true", **env})
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_wire_sentinel_into_the_channel_layer_and_the_embedded_default_otherwise():
    sentinel = settings_in_subprocess(REDIS_SENTINELS="s1:26379,s2:26379", REDIS_SENTINEL_MASTER="mymaster")
    layer = sentinel["layers"]["default"]
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["hosts"][0]["master_name"] == "mymaster"
    # The throttle counters follow Sentinel too (django-redis), so every instance shares them.
    assert sentinel["caches"]["default"]["OPTIONS"]["CLIENT_CLASS"] == "django_redis.client.SentinelClient"
    embedded = settings_in_subprocess()
    assert embedded["layers"]["default"]["BACKEND"] == "realtime.layers.EmbeddedChannelLayer"


# --- outbox (embedded default) ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_outbox_hands_out_messages_in_order_once():
    for n in range(3):
        outbox.outbox_put(group="game.all", message={"type": "rt.event", "n": n, "args": (1, 2)})
    taken = outbox.outbox_take(max_age=60, limit=2)
    assert [message["n"] for _, message in taken] == [0, 1]
    assert taken[0] == ("game.all", {"type": "rt.event", "n": 0, "args": [1, 2]})
    assert [message["n"] for _, message in outbox.outbox_take(max_age=60)] == [2]
    assert outbox.outbox_take(max_age=60) == []


@pytest.mark.django_db(transaction=True)
def test_outbox_drops_expired_messages():
    outbox.outbox_put(group="game.all", message={"n": "old"})
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=120))
    outbox.outbox_put(group="game.all", message={"n": "new"})
    assert [message["n"] for _, message in outbox.outbox_take(max_age=60)] == ["new"]
    assert outbox.outbox_pending() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_process_without_the_server_writes_group_sends_to_the_outbox():
    layer = get_channel_layer()
    assert isinstance(layer, EmbeddedChannelLayer)
    await layer.group_send("game.all", {"type": "rt.event", "text": "{}"})
    assert await db(OutboxMessage.objects.count)() == 1
    with pytest.raises(TypeError):
        await layer.group_send("bad group name!", {"type": "rt.event"})


@pytest.mark.django_db(transaction=True)
async def test_the_embedded_layer_falls_back_to_memory_without_a_database(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("no database")

    monkeypatch.setattr(outbox, "outbox_put", broken)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("game.all", channel)
    await layer.group_send("game.all", {"type": "rt.event", "n": 1})
    assert (await layer.receive(channel))["n"] == 1


# --- presence per instance, both implementations ---------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def shared_state(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    server = RedisServer().start()
    state = RedisStore.from_settings(
        {"url": server.url, "password": None, "sentinels": [], "db": 0, "max_connections": 10}
    )
    try:
        yield state
    finally:
        await state.close()
        server.stop()


async def test_presence_instances_lists_who_holds_presence(shared_state):
    assert await shared_state.presence_instances() == {}
    await shared_state.connection_opened(user_id="u1", connection_id="c1", endpoint="game", instance_id="i1")
    await shared_state.connection_opened(user_id="u2", connection_id="c2", endpoint="chat", instance_id="i1")
    await shared_state.connection_opened(user_id="u1", connection_id="c3", endpoint="game", instance_id="i2")
    assert await shared_state.presence_instances() == {"i1": 2, "i2": 1}
    await shared_state.connection_closed(user_id="u1", connection_id="c3", instance_id="i2")
    assert sorted(await shared_state.purge_instance("i1")) == ["u1", "u2"]
    assert await shared_state.presence_instances() == {}


# --- cluster overview ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_cluster_overview_counts_live_instances_and_lists_dead_ones():
    now = timezone.now()
    Instance.objects.create(id="live", last_seen=now)
    Instance.objects.create(id="leaving", last_seen=now, draining=True)
    Instance.objects.create(id="dead", last_seen=now - timedelta(hours=1))
    for n, (instance_id, endpoint) in enumerate(
        [("live", "game"), ("live", "game"), ("live", "chat"), ("leaving", "world"), ("dead", "game"), ("lost", "chat")]
    ):
        Connection.objects.create(id=f"c{n}", instance_id=instance_id, endpoint=endpoint)
    overview = monitoring.cluster_overview()
    states = {row.id: row.state for row in overview.instances}
    assert states == {"live": "live", "leaving": "draining", "dead": "dead", "lost": "dead"}
    assert overview.by_endpoint == {"game": 2, "chat": 1, "combat": 0, "world": 1}
    assert overview.total == 4
    lost = next(row for row in overview.instances if row.id == "lost")
    assert lost.last_seen is None and lost.connections == 1


@pytest.mark.django_db(transaction=True)
def test_outbox_drops_messages_written_before_the_server_started():
    outbox.outbox_put(group="game.all", message={"n": "before"})
    started = timezone.now()
    OutboxMessage.objects.update(created_at=started - timedelta(seconds=1))
    outbox.outbox_put(group="game.all", message={"n": "after"})
    assert [message["n"] for _, message in outbox.outbox_take(max_age=60, not_before=started)] == ["after"]
    assert outbox.outbox_pending() == 0
