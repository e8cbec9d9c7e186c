"""Reliability building blocks on the fast layer: presence reconciliation in BOTH store
implementations, bounded layer sends with local fallback and no late duplicates, outages logged
once, the watchdog's recovery, the drain when Redis hangs. Real outages: tests/integration/test_faults_*."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from channels.layers import get_channel_layer
from django.db import IntegrityError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.models import Guild
from realtime import auth, groups, health, housekeeping, outbound, watchdog
from realtime import runtime as runtime_module
from realtime import store as store_module
from realtime.boot import ensure_runtime
from realtime.features import offline, presence
from realtime.features.presence import PresenceTracker
from realtime.hub import EVENT
from realtime.models import Connection as ConnectionRecord
from realtime.models import Instance
from realtime.outages import DATABASE, REDIS, Outages, outages, service_of
from realtime.protocol import encode
from realtime.store import Opening, Position
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore
from tests.support.cluster import RedisServer
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

# --- the stores: reconciliation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def state(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("redis_server")
    store = RedisStore.from_settings(
        {"url": server.url, "password": None, "sentinels": [], "db": 0, "max_connections": 10}
    )
    await store.redis.flushdb()
    yield store
    await store.close()


async def test_connections_opened_together_are_recorded_in_order_within_the_cap(state):
    openings = [Opening("u1", f"c{n}", "chat", cap=2) for n in range(3)] + [Opening("u2", "d1", "game")]
    changes = await state.connections_opened("i1", openings)
    assert [(c.user_id, c.connections, c.admitted) for c in changes] == [
        ("u1", 1, True),
        ("u1", 2, True),
        ("u1", 2, False),  # over the cap: nothing recorded
        ("u2", 1, True),
    ]
    assert await state.user_endpoints("u1") == {"chat": 2}
    assert await state.presence_instances() == {"i1": 3}
    # One already recorded is admitted again at the cap (a retried open), not refused.
    (again,) = await state.connections_opened("i1", [Opening("u1", "c1", "chat", cap=2)])
    assert (again.connections, again.admitted) == (2, True)


async def test_refresh_re_asserts_what_vanished_and_reports_strays(state):
    await state.connection_opened(user_id="u1", connection_id="c1", endpoint="game", instance_id="i1")
    await state.connection_opened(user_id="u2", connection_id="c2", endpoint="chat", instance_id="i1")
    await state.connection_opened(user_id="u3", connection_id="c3", endpoint="chat", instance_id="i2")
    # i1 now holds c1 and a new c4 (opened while Redis was empty); c2 closed unseen.
    result = await state.refresh_instance("i1", {"c1": ("u1", "game"), "c4": ("u4", "world")})
    assert result.offline == ()
    assert result.strays == {"c2": "u2"}  # reported, left in place
    assert await state.user_endpoints("u4") == {"world": 1}
    assert await state.user_endpoints("u2") == {"chat": 1}
    assert await state.presence_instances() == {"i1": 3, "i2": 1}


async def test_refresh_removes_gone_connections_and_reports_users_left_with_none(state):
    await state.connection_opened(user_id="u1", connection_id="c1", endpoint="game", instance_id="i1")
    await state.connection_opened(user_id="u1", connection_id="c2", endpoint="chat", instance_id="i1")
    await state.connection_opened(user_id="u2", connection_id="c3", endpoint="chat", instance_id="i1")
    await state.connection_opened(user_id="u2", connection_id="c4", endpoint="game", instance_id="i2")
    await state.set_status("u1", "away")
    result = await state.refresh_instance("i1", {}, gone={"c1": "u1", "c2": "u1", "c3": "u2"})
    assert result.offline == ("u1",)  # u2 still has c4 on i2
    assert result.strays == {}
    assert await state.user_endpoints("u1") == {}
    assert await state.get_status("u1") is None
    assert await state.user_endpoints("u2") == {"game": 1}
    assert await state.presence_instances() == {"i2": 1}


async def test_a_gone_connection_whose_entry_already_vanished_still_reports_its_user(state):
    # Redis restarted empty while the connection closed: nothing to remove, but the user is gone.
    result = await state.refresh_instance("i1", {"c9": ("u9", "game")}, gone={"c1": "u1"})
    assert result.offline == ("u1",)
    assert await state.user_endpoints("u9") == {"game": 1}


async def test_a_connection_both_live_and_gone_is_kept(state):
    result = await state.refresh_instance("i1", {"c1": ("u1", "game")}, gone={"c1": "u1"})
    assert result.offline == ()
    assert await state.user_endpoints("u1") == {"game": 1}


async def test_positions_held_lists_an_instances_players(state):

    for user, instance in (("u1", "i1"), ("u2", "i1"), ("u3", "i2")):
        await state.position_enter(
            Position(user, user, "town", 10.0, 10.0),
            connection_id=f"c-{user}",
            instance_id=instance,
            radius=100,
            cell_size=100,
        )
    assert await state.positions_held("i1") == {"u1", "u2"}
    await state.position_remove("u1")
    assert await state.positions_held("i1") == {"u2"}
    assert await state.positions_held("nobody") == set()


# --- outages are logged once --------------------------------------------------------------------


def test_an_outage_is_logged_once_and_its_end_once(caplog):
    log = Outages()
    with caplog.at_level(logging.DEBUG, logger="realtime.outages"):
        assert log.failed(REDIS, ConnectionError("refused")) is True
        for _ in range(100):
            assert log.failed(REDIS, ConnectionError("refused")) is False
        assert log.down(REDIS) and not log.down(DATABASE)
        assert log.succeeded(REDIS) is not None
        assert log.succeeded(REDIS) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings[0] == "redis unavailable (ConnectionError: refused)"
    assert warnings[1].startswith("redis available again after ")
    assert len(warnings) == 2


# --- the outbound path when the layer fails ---------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


async def no_watchdog(self) -> None:
    return None


@pytestmark_db
async def test_a_slow_layer_send_is_delivered_locally_at_once_and_elsewhere_late(monkeypatch, caplog):
    monkeypatch.setattr(outbound, "LAYER_SEND_TIMEOUT", 0.2)
    monkeypatch.setattr(watchdog.Watchdog, "run", no_watchdog)  # it would see the layer's probe pass
    client = await connect("/ws/game")
    layer = get_channel_layer()
    real_send = layer.group_send
    release = asyncio.Event()

    async def queued(group, message):  # an overloaded instance: the PUBLISH goes out late
        await release.wait()
        await real_send(group, message)

    monkeypatch.setattr(layer, "group_send", queued)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            reached = await asyncio.wait_for(
                outbound.broadcast_to_channel(groups.game_all(), outbound.build_event("game_state", key="k", value=n)),
                2,
            )
            assert reached is False  # not confirmed in time
    assert [(await client.recv_type("game_state"))["value"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(outbound._outliving) == 5  # still being sent: a slow Redis is not a lost one
    release.set()
    for _ in range(50):
        if not outbound._outliving:
            break
        await asyncio.sleep(0.02)
    assert not outbound._outliving
    assert await client.nothing(0.3)  # the late copies came back through the layer and were dropped
    assert not [r for r in caplog.records if r.name == "realtime.outages"]  # slow is not an outage
    await client.close()


@pytestmark_db
async def test_when_redis_is_known_down_a_hung_send_is_given_up(monkeypatch):
    monkeypatch.setattr(outbound, "LAYER_SEND_TIMEOUT", 0.2)
    monkeypatch.setattr(watchdog.Watchdog, "run", no_watchdog)
    client = await connect("/ws/game")
    layer = get_channel_layer()
    cancelled = []

    async def hang(group, message):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(group)
            raise

    monkeypatch.setattr(layer, "group_send", hang)
    outages.failed(outbound.layer_service(), ConnectionError("known down"))
    assert (
        await outbound.broadcast_to_channel(groups.game_all(), outbound.build_event("game_state", key="k", value=1))
        is False
    )
    assert (await client.recv_type("game_state"))["value"] == 1
    await asyncio.sleep(0.05)
    assert cancelled == [groups.game_all()] and not outbound._outliving
    await client.close()


@pytestmark_db
async def test_a_refusing_layer_is_an_outage_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(watchdog.Watchdog, "run", no_watchdog)
    client = await connect("/ws/game")

    async def refuse(group, message):
        raise ConnectionError("refused")

    monkeypatch.setattr(get_channel_layer(), "group_send", refuse)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            await outbound.broadcast_to_channel(groups.game_all(), outbound.build_event("game_state", key="k", value=n))
    assert [(await client.recv_type("game_state"))["value"] for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len([r for r in caplog.records if r.name == "realtime.outages"]) == 1
    await client.close()


@pytestmark_db
async def test_a_late_copy_of_a_locally_delivered_broadcast_is_dropped():
    client = await connect("/ws/game")
    runtime = await ensure_runtime()
    event = outbound.build_event("game_state", key="once", value=1)
    message = {"type": EVENT, "group": groups.game_all(), "text": encode(event), "sent_at": 123.0}
    runtime.hub.dispatch_fallback(dict(message))
    # The PUBLISH that timed out is carried out after all: the copy arrives through the layer.
    await get_channel_layer().group_send(groups.game_all(), dict(message))
    await outbound.broadcast_to_channel(groups.game_all(), outbound.build_event("game_state", key="next", value=2))
    assert (await client.recv_type("game_state"))["key"] == "once"
    assert (await client.recv_type("game_state"))["key"] == "next"
    await client.close()


@pytestmark_db
async def test_personal_message_reaches_a_local_connection_when_presence_fails(monkeypatch):
    user = await db(make_user)()
    client = await connect("/ws/chat", access_token(user))
    runtime = await ensure_runtime()

    async def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(runtime.store, "user_endpoints", broken)
    assert await presence.user_reachable(str(user.pk), frozenset({"chat"})) is True
    assert await presence.user_reachable(str(user.pk), frozenset({"combat"})) is False
    delivery = await offline.send_personal(str(user.pk), outbound.build_event("notice", text="hi"))
    assert delivery == "live"
    assert (await client.recv_type("notice"))["text"] == "hi"
    await client.close()


# --- presence reconciliation by housekeeping ----------------------------------------------------


class FlakyState(MemoryStore):
    """Memory state whose presence calls fail while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self):
        if self.down:
            raise ConnectionError("redis down")

    async def connection_opened(self, **kwargs):
        self._check()
        return await super().connection_opened(**kwargs)

    async def connection_closed(self, **kwargs):
        self._check()
        return await super().connection_closed(**kwargs)

    async def refresh_instance(self, *args, **kwargs):
        self._check()
        return await super().refresh_instance(*args, **kwargs)

    async def user_endpoints(self, user_id):
        self._check()
        return await super().user_endpoints(user_id)


@pytest.fixture
def flaky(settings):
    settings.WEBSOCKET_CLEANUP_INTERVAL = 3600  # reconciliation runs only when the test says
    state = store_module._stores["memory"] = FlakyState()
    return state


async def status_of(client, user):
    while (frame := await client.recv_type("player_status"))["user_id"] != str(user.pk):
        pass
    return frame


@pytestmark_db
async def test_closes_and_opens_missed_during_an_outage_are_announced_once_it_ends(flaky):

    guild = await db(Guild.objects.create)(name="Reconcilers")
    watcher_user = await db(make_user)(guild=guild)
    leaver = await db(make_user)(guild=guild)
    joiner = await db(make_user)(guild=guild)
    watcher = await connect("/ws/game", access_token(watcher_user))
    leaving = await connect("/ws/game", access_token(leaver))
    assert (await status_of(watcher, leaver))["status"] == "online"
    runtime = await ensure_runtime()
    await runtime.get(PresenceTracker).reconcile()

    flaky.down = True
    await leaving.close()
    joining = await connect("/ws/game", access_token(joiner))
    assert await watcher.nothing(0.2)  # neither change could be recorded, nor announced
    await runtime.get(PresenceTracker).reconcile()  # still down: nothing happens
    assert list(runtime.get(PresenceTracker).unconfirmed_closes.values()) == [str(leaver.pk)]

    flaky.down = False
    await runtime.get(PresenceTracker).reconcile()  # first run back: re-asserts, announces the missed opening
    assert (await status_of(watcher, joiner))["status"] == "online"
    assert await flaky.user_endpoints(str(leaver.pk)) == {"game": 1}  # not yet: others re-assert first
    await runtime.get(PresenceTracker).reconcile()  # second run: the missed close is applied
    assert (await status_of(watcher, leaver))["status"] == "offline"
    assert await flaky.user_endpoints(str(leaver.pk)) == {}
    await runtime.get(PresenceTracker).reconcile()
    assert await watcher.nothing(0.2)  # each announced once
    for client in (watcher, joining):
        await client.close()


@pytestmark_db
async def test_strays_are_removed_only_when_seen_twice(flaky):
    user = await db(make_user)()
    client = await connect("/ws/game", access_token(user))
    runtime = await ensure_runtime()
    # An entry of this instance that no connection of it holds (e.g. left by a failed update).
    await flaky.connection_opened(
        user_id=str(user.pk), connection_id="ghost", endpoint="chat", instance_id=runtime.instance_id
    )
    await runtime.get(PresenceTracker).reconcile()
    assert runtime.get(PresenceTracker).strays == {"ghost": str(user.pk)}
    assert await flaky.user_endpoints(str(user.pk)) == {"game": 1, "chat": 1}
    await runtime.get(PresenceTracker).reconcile()
    assert runtime.get(PresenceTracker).strays == {}
    assert await flaky.user_endpoints(str(user.pk)) == {"game": 1}
    await client.close()


# --- the watchdog ----------------------------------------------------------------------------------


@pytestmark_db
async def test_watchdog_logs_a_database_outage_once_and_its_end_once(monkeypatch, caplog):
    runtime = await ensure_runtime()
    dog = watchdog.Watchdog(runtime)
    checks = {"channel_layer": {"status": "ok"}, "shared_state": {"status": "ok"}, "database": {"status": "ok"}}

    async def run_checks(**kwargs):
        return checks

    monkeypatch.setattr(health, "run_checks", run_checks)
    with caplog.at_level(logging.WARNING, logger="realtime.outages"):
        await dog.run()
        checks["database"] = {"status": "error", "error": "OperationalError"}
        for _ in range(10):
            await dog.run()
        assert outages.down(DATABASE)
        checks["database"] = {"status": "ok"}
        await dog.run()
        await dog.run()
    lines = [r.getMessage() for r in caplog.records if r.name == "realtime.outages"]
    assert lines[0] == "database unavailable (database=OperationalError)"
    assert lines[1].startswith("database available again after")
    assert len(lines) == 2


@pytestmark_db
async def test_watchdog_hands_over_events_kept_while_presence_failed(monkeypatch):

    user = await db(make_user)()
    client = await connect("/ws/chat", access_token(user))
    runtime = await ensure_runtime()
    sender = str(uuid.uuid4())
    fields = {"message_id": str(uuid.uuid4()), "user": "bob", "user_id": sender, "content": "kept while down"}
    event = outbound.build_event("chat_message", **fields, channel="private", to=str(user.pk))
    frame = encode(event)
    await offline.pending_store_async(user_id=str(user.pk), event_type="chat_message", frame=frame, endpoints=["chat"])
    checks = {"channel_layer": {"status": "error", "error": "ConnectionError"}, "shared_state": {"status": "ok"}}
    checks["database"] = {"status": "ok"}

    async def run_checks(**kwargs):
        return checks

    monkeypatch.setattr(health, "run_checks", run_checks)
    dog = watchdog.Watchdog(runtime, watch_redis=True)
    await dog.run()
    assert await client.nothing(0.2)
    checks["channel_layer"] = {"status": "ok"}
    await dog.run()
    assert (await client.recv_type("chat_message"))["content"] == "kept while down"
    await dog.run()
    assert await client.nothing(0.2)
    await client.close()


# --- draining while Redis hangs -------------------------------------------------------------------


@pytestmark_db
async def test_drain_removes_the_registry_rows_even_when_redis_hangs(monkeypatch, settings):
    settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL = 0.05
    monkeypatch.setattr(runtime_module, "SHUTDOWN_TIMEOUT", 1.0)
    user = await db(make_user)()
    client = await connect("/ws/game", access_token(user))
    runtime = await ensure_runtime()
    for _ in range(100):
        if await db(ConnectionRecord.objects.filter(instance_id=runtime.instance_id).exists)():
            break
        await asyncio.sleep(0.05)

    async def hang(instance_id):
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime.store, "purge_instance", hang)
    await asyncio.wait_for(runtime.drain(), 3)
    assert not await db(ConnectionRecord.objects.filter(instance_id=runtime.instance_id).exists)()
    assert not await db(Instance.objects.filter(id=runtime.instance_id).exists)()
    del client


# --- connecting while the database is down ---------------------------------------------------------


@pytestmark_db
async def test_connecting_while_the_database_is_down_says_try_again_not_invalid_token(monkeypatch):

    user = await db(make_user)()

    def down(user_ids):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed')

    monkeypatch.setattr(auth, "connection_users_load", down)
    client = await connect("/ws/chat", access_token(user), expect_established=False)
    error = await client.recv()
    assert (error["code"], error["message"]) == ("unavailable", "A backing service is unavailable; try again shortly.")
    assert await client.expect_close() == 4503
    assert outages.down(DATABASE)


def test_only_connection_level_errors_count_as_outages():

    assert service_of(OperationalError("gone")) == DATABASE
    assert service_of(IntegrityError("duplicate")) is None
    assert service_of(RedisConnectionError("refused")) == REDIS
    assert service_of(TimeoutError()) == REDIS
    assert service_of(ValueError("bug")) is None


@pytestmark_db
async def test_watchdog_takes_slow_broadcasts_for_a_busy_instance_not_an_outage(monkeypatch):
    runtime = await ensure_runtime()
    checks = {"channel_layer": {"status": "error", "error": "timeout"}, "shared_state": {"status": "ok"}}
    checks["database"] = {"status": "ok"}

    async def run_checks(**kwargs):
        return checks

    monkeypatch.setattr(health, "run_checks", run_checks)
    dog = watchdog.Watchdog(runtime, watch_redis=True)
    await dog.run()
    assert not outages.down(REDIS)
    checks["shared_state"] = {"status": "error", "error": "timeout"}  # Redis itself does not answer
    await dog.run()
    assert outages.down(REDIS)


@pytest.mark.django_db
def test_queries_over_every_user_of_an_instance_are_made_in_chunks(monkeypatch):
    """Revalidation, statuses after an instance died and pending deliveries read thousands of
    users; each query takes a chunk (SQLite limits a query's parameters)."""
    monkeypatch.setattr(housekeeping, "REVALIDATE_CHUNK", 7)
    monkeypatch.setattr(presence, "STATUS_CHUNK", 7)
    monkeypatch.setattr(offline, "PENDING_CHUNK", 7)
    users = [make_user(has_pending_deliveries=n % 2 == 0) for n in range(20)]
    ids = [str(user.pk) for user in users]
    assert set(housekeeping._user_states(ids)) == set(ids)
    assert {row[0] for row in presence._users_for_status(ids)} == set(ids)
    assert set(offline._users_with_pending(ids)) == set(ids[::2])
