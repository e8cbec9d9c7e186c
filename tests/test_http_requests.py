"""HTTP requests in flight are counted while they run, so a shutdown can wait for them."""

from __future__ import annotations

import asyncio

from realtime.http_requests import RequestsInFlight


async def test_a_request_is_counted_while_it_runs_and_settled_waits_for_it():
    requests = RequestsInFlight()
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()
        return "answered"

    running = asyncio.ensure_future(requests.track(app)({"type": "http"}, None, None))
    await asyncio.sleep(0)
    assert requests.count == 1
    assert await requests.settled(0.05) is False
    asyncio.get_running_loop().call_later(0.05, release.set)
    assert await requests.settled(5) is True
    assert await running == "answered" and requests.count == 0


async def test_a_failing_or_cancelled_request_is_no_longer_counted():
    requests = RequestsInFlight()

    async def fails(scope, receive, send):
        raise ValueError("bad request")

    async def hangs(scope, receive, send):
        await asyncio.Event().wait()

    failing = asyncio.ensure_future(requests.track(fails)({}, None, None))
    hanging = asyncio.ensure_future(requests.track(hangs)({}, None, None))
    await asyncio.sleep(0)
    hanging.cancel()
    await asyncio.gather(failing, hanging, return_exceptions=True)
    assert requests.count == 0 and await requests.settled(0) is True
