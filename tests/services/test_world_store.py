"""World positions in the shared state, for BOTH implementations (memory and a private Redis)."""

from __future__ import annotations

import random

import pytest

from realtime.store import MoveStatus, Position
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore
from tests.support.cluster import RedisServer

R = 100.0


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


def pos(user, x, y, zone="town", name=None):
    return Position(user, name or f"name-{user}", zone, float(x), float(y))


async def enter(state, user, x, y, *, zone="town", conn=None, instance="i1"):
    return await state.position_enter(
        pos(user, x, y, zone), connection_id=conn or f"c-{user}", instance_id=instance, radius=R, cell_size=R
    )


async def move(state, user, x, y, *, zone="town", conn=None, limit=0, step=50.0):
    return await state.position_move(
        pos(user, x, y, zone),
        connection_id=conn or f"c-{user}",
        radius=R,
        cell_size=R,
        max_step=step,
        rate_limit=limit,
        rate_window=60,
    )


async def test_enter_returns_previous_and_players_within_radius(state):
    assert await enter(state, "a", 500, 500) == (None, [])
    await enter(state, "far", 500, 601)  # 101 away
    await enter(state, "edge", 500, 600)  # exactly on the circle: near
    await enter(state, "other-zone", 500, 500, zone="forest")
    previous, near = await enter(state, "b", 500, 500)
    assert previous is None
    assert sorted(p.user_id for p in near) == ["a", "edge"]
    assert next(p for p in near if p.user_id == "a") == pos("a", 500, 500)
    previous, near = await enter(state, "b", 10, 10, zone="forest")
    assert previous == pos("b", 500, 500)
    assert near == []
    assert await state.position_get("b") == pos("b", 10, 10, "forest")


async def test_move_checks_owner_zone_and_step(state):
    assert (await move(state, "a", 1, 1)).status is MoveStatus.NOT_IN_ZONE
    await enter(state, "a", 500, 500)
    outcome = await move(state, "a", 500, 500, zone="forest")
    assert outcome.status is MoveStatus.NOT_IN_ZONE and outcome.previous.zone == "town"
    assert (await move(state, "a", 510, 500, conn="someone-else")).status is MoveStatus.NOT_OWNER
    too_far = await move(state, "a", 530, 541)  # 50.01 away
    assert too_far.status is MoveStatus.TOO_FAR and (too_far.previous.x, too_far.previous.y) == (500, 500)
    moved = await move(state, "a", 530, 540)  # exactly 50
    assert moved.status is MoveStatus.MOVED and moved.previous == pos("a", 500, 500)
    assert await state.position_get("a") == pos("a", 530, 540)


async def test_move_rate_limit_counts_every_attempt_of_the_user(state):
    await enter(state, "a", 500, 500)
    assert (await move(state, "a", 501, 500, limit=3)).status is MoveStatus.MOVED
    assert (await move(state, "a", 501, 500, conn="other", limit=3)).status is MoveStatus.NOT_OWNER
    assert (await move(state, "a", 502, 500, limit=3)).status is MoveStatus.MOVED
    assert (await move(state, "a", 503, 500, limit=3)).status is MoveStatus.RATE_LIMITED
    assert (await state.position_get("a")).x == 502


async def test_move_reports_players_crossing_the_movers_radius(state):
    await enter(state, "mover", 500, 500)
    await enter(state, "stays-near", 520, 500)
    await enter(state, "comes-near", 500, 640)  # 140 away, will be 90
    await enter(state, "goes-far", 500, 410)  # 90 away, will be 140
    await enter(state, "stays-far", 900, 900)
    outcome = await move(state, "mover", 500, 550)
    assert outcome.status is MoveStatus.MOVED
    assert [p.user_id for p in outcome.entered] == ["comes-near"]
    assert outcome.entered[0] == pos("comes-near", 500, 640)
    assert list(outcome.left) == ["goes-far"]


async def test_move_across_cells_keeps_the_index_right(state):
    await enter(state, "a", 95, 95)  # cell (0, 0)
    for x, y in [(105, 95), (105, 105), (140, 140), (175, 175), (199.5, 205)]:
        assert (await move(state, "a", x, y)).status is MoveStatus.MOVED
    # Indexed in its last cell only: found from there, not from around the cell it started in.
    assert [p.user_id for p in await state.positions_near("town", 250, 250, R, R)] == ["a"]
    assert await state.positions_near("town", 50, 50, R, R) == []
    assert await state.positions_near("town", -60, -60, 1.5 * R, R) == []


async def test_remove_only_by_owner_and_purge_by_instance(state):
    await enter(state, "a", 1, 1, conn="c1", instance="i1")
    await enter(state, "b", 2, 2, instance="i1")
    await enter(state, "c", 3, 3, instance="i2")
    assert await state.position_remove("a", connection_id="c2") is None
    assert await state.position_remove("a", connection_id="c1") == pos("a", 1, 1)
    assert await state.position_remove("a") is None
    # "c" re-enters through instance i1: it is i1's now, and gone with it.
    await enter(state, "c", 4, 4, instance="i1")
    purged = await state.purge_instance_positions("i1")
    assert sorted(p.user_id for p in purged) == ["b", "c"]
    assert await state.positions_near("town", 2, 2, R, R) == []
    assert await state.purge_instance_positions("i2") == []


async def test_positions_near_is_exact_against_brute_force(state):
    rng = random.Random(7)
    points = {f"u{i}": (rng.uniform(0, 1000), rng.uniform(0, 1000)) for i in range(150)}
    for user, (x, y) in points.items():
        await enter(state, user, x, y)
    for _ in range(20):
        cx, cy = rng.uniform(0, 1000), rng.uniform(0, 1000)
        expected = {u for u, (x, y) in points.items() if (x - cx) ** 2 + (y - cy) ** 2 <= R * R}
        assert {p.user_id for p in await state.positions_near("town", cx, cy, R, R)} == expected
