"""Abuse with the default limits on, against two real daphne instances and a real Redis
(docs/protocol.md §3, docs/reliability.md): limits that act as frames arrive, connection caps
that hold when connects arrive together, and the per-user limits of movement and fights.

This module starts its own cluster, with every limit at its production default.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.support.attacks import DAPHNE_LIMITS, DEFAULT_LIMITS, Victim, history_burst
from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.faults import rss
from tests.support.users import access_token, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The default limits; the default window is 1 s, a longer one keeps the movement test independent
# of how fast a busy machine handles 40 zone changes (the limit itself is the default).
HARDENED = {**DEFAULT_LIMITS, "WORLD_MOVE_RATE_WINDOW": "30"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hardened(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env=HARDENED)
        for server in cluster.servers:
            server.daphne_args = list(DAPHNE_LIMITS)
        cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def tokens(n: int) -> list[str]:
    return [access_token(await db(make_user)()) for _ in range(n)]


async def test_a_burst_of_expensive_frames_is_refused_as_it_arrives(hardened):
    """3 accounts × 20 /ws/chat connections × 100 `history_request`s of 60 kB at once."""
    a = hardened[0]
    attackers = await tokens(3)
    (victim_token,) = await tokens(1)
    before = rss(a)
    async with Victim(a.ws, victim_token) as victim:
        result = await history_burst(a.ws, attackers, connections_per_user=20, frames=100, frame_bytes=60_000)
        await asyncio.sleep(1.0)
    grown = (rss(a) - before) / MiB
    refused = result.replies["error:rate_limited"]
    print(
        f"\nburst: {result.frames_sent} frames sent in {result.seconds:.1f} s; replies {dict(result.replies)}; "
        f"closes {dict(result.closes)}; instance RSS +{grown:.1f} MiB; "
        f"another player's slowest answer {victim.slowest * 1000:.0f} ms over {len(victim.latencies)} requests"
    )
    assert refused > 0, result.replies
    # Everything beyond each connection's bucket was refused, not queued and handled later.
    assert result.replies["history"] <= 60 * 40 + 60 * 20 * result.seconds, result.replies
    assert grown <= 64, f"the instance grew by {grown:.1f} MiB"
    assert not victim.failures, victim.failures
    assert victim.slowest < 1.0, f"another player waited {victim.slowest:.2f} s"
    # The instance serves as before.
    (fresh,) = await tokens(1)
    client = await WsClient.open(f"{a.ws}/ws/chat", fresh)
    assert (await client.request({"type": "history_request", "channel": "global"}))["type"] == "history"
    await client.close()


async def test_a_client_with_too_many_frames_waiting_is_closed(hardened):
    """More than WEBSOCKET_MAX_QUEUED_FRAMES frames waiting (each slow to handle): 4429."""
    a = hardened[0]
    (token,) = await tokens(1)
    client = await WsClient.open(f"{a.ws}/ws/chat", token)
    big = json.dumps({"type": "history_request", "channel": "global", "limit": 100, "pad": "x" * 60_000})
    try:
        for _ in range(40):  # within the bucket's burst: only the backlog bound can stop them
            await client.connection.send(big)
    except websockets.ConnectionClosed:
        pass  # closed while still sending: what this test expects
    assert await client.closed_with(10) == 4429
    assert any(f.get("code") == "rate_limited" and "waiting" in f.get("message", "") for f in client.received)


async def test_the_per_user_cap_holds_when_connects_arrive_together_on_two_instances(hardened):
    a, b = hardened[0], hardened[1]
    (token,) = await tokens(1)

    async def attempt(server) -> str:
        try:
            connection = await websockets.connect(f"{server.ws}/ws/game", subprotocols=["bearer", token])
        except Exception as exc:
            return f"refused: {exc}"
        first = json.loads(await connection.recv())
        if first["type"] == "connection_established":
            opened.append(connection)
            return "open"
        await connection.wait_closed()
        return f"{first.get('code')}/{connection.close_code}"

    opened: list[websockets.ClientConnection] = []
    outcomes = await asyncio.gather(*(attempt(server) for server in (a, b) * 100))
    assert outcomes.count("open") == 20, sorted(set(outcomes))
    assert outcomes.count("too_many_connections/4429") == 180, sorted(set(outcomes))
    for connection in opened:
        await connection.close()


async def test_anonymous_connections_are_capped_per_address_per_instance(hardened):
    b = hardened[1]

    opened: list[websockets.ClientConnection] = []

    async def attempt() -> str:
        connection = await websockets.connect(f"{b.ws}/ws/game")
        first = json.loads(await connection.recv())
        if first["type"] == "connection_established":
            opened.append(connection)
            return "open"
        await connection.wait_closed()
        return f"{first.get('code')}/{connection.close_code}"

    outcomes = await asyncio.gather(*(attempt() for _ in range(70)))
    assert outcomes.count("open") == 50
    assert outcomes.count("too_many_connections/4429") == 20
    for connection in opened:
        await connection.close()
    # Logged-in players behind the same address are not capped by it (one carrier NAT).
    players = [await WsClient.open(f"{b.ws}/ws/game", token) for token in await tokens(3)]
    for client in players:
        await client.close()


async def test_zone_changes_count_against_the_movement_limit(hardened):
    a, b = hardened[0], hardened[1]
    (mover_token,) = await tokens(1)
    watcher = await WsClient.open(f"{b.ws}/ws/world")
    await watcher.request({"type": "zone_change", "zone": "starter_town", "x": 500, "y": 500})
    mover = await WsClient.open(f"{a.ws}/ws/world", mover_token)
    zones = ["starter_town", "dark_forest"]
    for n in range(40):  # within the connection's burst: only the movement limit applies
        await mover.send({"type": "zone_change", "zone": zones[n % 2], "id": n})
    replies = [await mover.recv_type(kind, timeout=10) for kind in ["zone_changed"] * 25 + ["error"] * 15]
    refused = replies[25:]
    assert {(f["code"], f["details"]["limit"]) for f in refused} == {("rate_limited", 25)}
    assert sorted(f["id"] for f in replies) == list(range(40))
    await asyncio.sleep(0.5)
    seen = [f for f in watcher.received if f["type"] in ("player_entered", "player_left")]
    assert len(seen) <= 25, len(seen)  # at most one announcement per allowed entry
    await watcher.close()
    await mover.close()


async def test_fights_started_per_user_are_limited_across_instances(hardened):
    a, b = hardened[0], hardened[1]
    (token,) = await tokens(1)
    on_a = await WsClient.open(f"{a.ws}/ws/combat", token)
    on_b = await WsClient.open(f"{b.ws}/ws/combat", token)
    codes = []
    for n in range(12):
        client = on_a if n % 2 == 0 else on_b
        reply = await client.request({"type": "combat_start", "monsters": ["goblin"]})
        codes.append(reply["type"] if reply["type"] != "error" else reply["code"])
    # Ten starts a minute per user wherever they arrive (the first fights; the others find the
    # player busy in it), then `rate_limited`.
    assert codes[:10].count("rate_limited") == 0, codes
    assert codes[10:] == ["rate_limited", "rate_limited"], codes
    await on_a.close()
    await on_b.close()
