"""The Redis stream log's reads under a reconnect storm (realtime/streams/redis.py): resumes that
arrive together share one read per stream, and each still gets exactly its own range."""

from __future__ import annotations

import asyncio
import json

import pytest

from realtime.streams.redis import RedisStreamLog
from tests.support.cluster import RedisServer


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
async def log(redis_server):
    stream_log = RedisStreamLog([{"address": redis_server.url}], prefix="test")
    await stream_log._shards[0].flushdb()
    yield stream_log
    await stream_log.close()


async def test_resumes_arriving_together_share_one_read_and_get_their_own_range(log, monkeypatch):
    for n in range(1, 9):
        await log.append(stream="chat:global", group="chat.global", text=f'{{"n":{n}}}', message={"type": "x"})
    reads = []
    run_kept = log._run_kept

    async def counting(stream, after, upto):
        reads.append((stream, after, upto))
        return await run_kept(stream, after, upto)

    monkeypatch.setattr(log, "_run_kept", counting)
    wide, narrow, nothing, old = await asyncio.gather(
        log.kept("chat:global", after=2),
        log.kept("chat:global", after=5, upto=6),
        log.kept("chat:global", after=8),
        log.kept("chat:global", after=0, upto=3),
    )
    assert reads == [("chat:global", 0, None)]  # one read, the widest range
    assert [offset for offset, _ in wide.frames] == [3, 4, 5, 6, 7, 8]
    assert [offset for offset, _ in narrow.frames] == [6]
    assert nothing.frames == [] and nothing.position.offset == 8
    assert [json.loads(frame)["n"] for _, frame in old.frames] == [1, 2, 3]
