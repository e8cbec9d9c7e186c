"""A client that completes the handshake and then stops reading, against a real daphne: the
server does not buffer for it without bound (its send buffer is capped by
WEBSOCKET_SEND_BUFFER_BYTES; it is closed with 4413 and dropped) and the others keep receiving
everything. Memory is checked as the server process's RSS, with a generous bound, never timings.

This module starts its own cluster (one instance is enough: the limit is per process).
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from tests.support.cluster import Cluster, WsClient
from tests.support.faults import StalledClient, rss, staff_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SEND_BUFFER = 256 * 1024
EVENT_BYTES = 60_000  # under WEBSOCKET_MAX_MESSAGE_BYTES (65536), the publish route's limit
EVENTS = 500  # 30 MB in all: what an unbounded server would hold for the stalled client
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=1, env={"WEBSOCKET_SEND_BUFFER_BYTES": str(SEND_BUFFER)}).start()
    try:
        yield cluster[0]
    finally:
        cluster.stop()


async def test_a_client_that_stops_reading_is_dropped_and_costs_bounded_memory(server, unique):
    _, staff = await staff_token(server, unique("staff"))
    reader = await WsClient.open(f"{server.ws}/ws/game")
    filler = "x" * EVENT_BYTES

    def publish(n: int) -> int:
        status, _ = server.request(
            "POST",
            "/api/v1/websocket/publish",
            {"target": "game", "message": {"type": "game_state", "key": f"k{n}", "value": filler}},
            staff,
        )
        return status

    async def read_all(count: int) -> list[str]:
        keys = []
        while len(keys) < count:
            frame = await reader.recv(timeout=60)
            if frame["type"] == "game_state":
                keys.append(frame["key"])
        return keys

    async def publish_all(numbers: range) -> list[str]:
        reading = asyncio.create_task(read_all(len(numbers)))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            loop = asyncio.get_running_loop()
            statuses = await asyncio.gather(*(loop.run_in_executor(pool, publish, n) for n in numbers))
        assert set(statuses) == {202}
        return await asyncio.wait_for(reading, 120)

    # Warm up with readers only, so the allocator's own growth is not counted below.
    await publish_all(range(-EVENTS // 2, 0))
    stalled = await asyncio.to_thread(StalledClient(server, "/ws/game").open)
    await reader.request({"type": "ping"})
    before = rss(server)
    keys = await publish_all(range(EVENTS))
    # Everyone else got everything.
    assert sorted(keys) == sorted(f"k{n}" for n in range(EVENTS))
    after = rss(server)

    # The stalled client was closed as a slow consumer and its socket dropped.
    status, metrics = await asyncio.to_thread(server.request, "GET", "/api/v1/websocket/metrics", None, staff)
    assert status == 200
    assert metrics["slow_consumers"] == 1
    assert metrics["closes"]["game"].get("4413") == 1
    assert metrics["connections"]["instance"]["by_endpoint"]["game"] == 1  # the reader only
    # What it could still read is bounded too: the buffer cap plus what the kernel held.
    leftover = await asyncio.to_thread(stalled.read_until_dropped)
    stalled.close()
    assert leftover < EVENTS * EVENT_BYTES / 2
    growth = after - before
    print(
        f"FIGURE slow_consumer sent_mib={EVENTS * EVENT_BYTES / MiB:.1f} rss_growth_mib={growth / MiB:.1f}"
        f" stalled_client_could_still_read_mib={leftover / MiB:.1f}"
    )
    # An unbounded buffer would keep all 28.6 MiB for the stalled client, on top of everything
    # else. Without it the growth is noise: the publish requests leave cycles holding their 60 kB
    # bodies for the garbage collector, and the allocator keeps freed memory; measured from
    # 0 to 14.4 MiB from run to run. Under 20 MiB tells the two apart.
    assert growth < 20 * MiB, f"server grew by {growth / MiB:.1f} MiB"
    assert (await reader.request({"type": "ping"}))["type"] == "pong"
    await reader.close()
