"""HTTP requests in flight, counted so a shutdown can let them finish before the loop stops.

Django answers HTTP on a worker thread that calls back into the event loop (its middleware chain
does). A request still running when daphne stops the loop leaves that thread waiting for ever,
and Python waits for every worker thread before it exits: the process would hang after SIGTERM
(seen with a client fetching a token in the instant its WebSocket got 1001). The drain in
`server_hooks` waits, bounded, until no request is in flight.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

Scope = dict[str, Any]


class RequestsInFlight:
    """How many HTTP requests this process is answering."""

    def __init__(self) -> None:
        self.count = 0

    def track(self, app: Any) -> Any:
        """`app` (an ASGI application for HTTP), counting each request while it runs."""

        async def tracked(scope: Scope, receive: Any, send: Any) -> Any:
            self.count += 1
            try:
                return await app(scope, receive, send)
            finally:
                self.count -= 1

        return tracked

    async def settled(self, timeout: float, every: float = 0.02) -> bool:
        """Wait until no request is in flight; False if some still are after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.count > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every)
        return True


http_requests = RequestsInFlight()
