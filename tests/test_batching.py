"""Batched lookups (realtime/batching.py): keys asked together share one call, at most one call is
in flight, failures reach every caller of their batch, and a caller that leaves harms nobody."""

from __future__ import annotations

import asyncio

import pytest

from realtime.batching import BatchedLookup


class Source:
    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.calls.append(sorted(keys))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return {key: key.upper() for key in keys if key != "absent"}
        finally:
            self.in_flight -= 1


async def test_keys_asked_together_share_one_call_and_absent_keys_are_none():
    source = Source()
    lookup = BatchedLookup(source)
    results = await asyncio.gather(*(lookup(key) for key in ["a", "b", "a", "absent"]))
    assert results == ["A", "B", "A", None]
    assert source.calls == [["a", "absent", "b"]]


async def test_a_key_alone_is_looked_up_at_once_and_again_next_time():
    source = Source()
    lookup = BatchedLookup(source)
    assert await lookup("a") == "A"
    assert await lookup("a") == "A"  # nothing is cached: a ban must show on the next connect
    assert source.calls == [["a"], ["a"]]


async def test_keys_asked_while_a_call_runs_wait_for_the_next_one():
    source = Source(delay=0.05)
    lookup = BatchedLookup(source, max_batch=3)
    first = asyncio.create_task(lookup("k0"))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(lookup(f"k{n}")) for n in range(1, 8)]
    assert await asyncio.gather(first, *later) == [f"K{n}" for n in range(8)]
    assert source.calls == [["k0"], ["k1", "k2", "k3"], ["k4", "k5", "k6"], ["k7"]]
    assert source.most_in_flight == 1


async def test_a_failure_reaches_every_caller_of_its_batch_and_the_next_batch_is_tried_again():
    source = Source(fail=ConnectionError("database gone"))
    lookup = BatchedLookup(source)
    results = await asyncio.gather(lookup("a"), lookup("b"), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    source.fail = None
    assert await lookup("a") == "A"


async def test_a_caller_that_leaves_does_not_disturb_the_others():
    source = Source(delay=0.05)
    lookup = BatchedLookup(source)
    leaving = asyncio.create_task(lookup("a"))
    staying = asyncio.create_task(lookup("a"))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying == "A"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_many_keys_at_once_share_the_call_with_single_ones():
    source = Source()
    lookup = BatchedLookup(source)
    together, alone = await asyncio.gather(lookup.many(["a", "b", "a"]), lookup("c"))
    assert together == {"a": "A", "b": "B"} and alone == "C"
    assert source.calls == [["a", "b", "c"]]
