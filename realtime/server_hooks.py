"""Start the runtime with the server and drain it on shutdown, under daphne or any ASGI server.

Daphne does not speak the ASGI lifespan protocol, so under daphne we use Twisted's reactor
hooks: start when the reactor runs (the instance must clean up after dead peers and fire
combat timers even with no client connected), and drain in a "before shutdown" trigger, which
Twisted waits for, so every client gets a 1001 close frame before the sockets go and HTTP
requests in flight are answered before the loop stops. Other servers (uvicorn) get the standard
lifespan events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pprint
import sys
import threading
from typing import Any

import autobahn.websocket.protocol as autobahn_protocol
from daphne.access import AccessLogGenerator
from django.conf import settings
from twisted.internet import defer

from realtime.boot import ensure_runtime
from realtime.gc_tuning import tune_garbage_collector
from realtime.http_requests import http_requests
from realtime.runtime import Runtime, current_runtime, running_runtime
from rpgrealtime.logging import redact

logger = logging.getLogger(__name__)

# How long the drain waits for HTTP requests in flight once the WebSockets are closed.
HTTP_SETTLE_TIMEOUT = 5.0
# How long the process may take to exit once the reactor has stopped. Python waits for every
# worker thread before it exits; one stuck on the stopped loop would keep it alive for ever.
EXIT_GRACE = 5.0


async def _drain(runtime: Runtime | None) -> None:
    if runtime is not None:
        await runtime.drain()
    if not await http_requests.settled(HTTP_SETTLE_TIMEOUT):
        logger.warning("shutting down with %d HTTP requests still in flight", http_requests.count)


def _exit_unless_done() -> None:
    """After the reactor stopped: exit within EXIT_GRACE even if a worker thread never returns."""
    main = threading.main_thread()

    def exit_now() -> None:
        stuck = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not main]
        logger.warning("exit blocked for %.0f s by threads %s; exiting anyway", EXIT_GRACE, ", ".join(stuck))
        logging.shutdown()  # flush the log before os._exit skips it
        os._exit(0)

    timer = threading.Timer(EXIT_GRACE, exit_now)
    timer.daemon = True  # never keeps the process alive itself
    timer.start()


def install_daphne_hooks() -> bool:
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or "daphne.server" not in sys.modules:
        return False

    starting: list[asyncio.Future] = []  # keep a reference so the task is not collected

    def start() -> None:
        tune_garbage_collector(settings.GC_THRESHOLD)
        starting.append(asyncio.ensure_future(ensure_runtime()))

    def drain() -> defer.Deferred | None:
        runtime = running_runtime()
        try:
            if runtime is not None:
                # Close frames are written now, synchronously, while every connection is known.
                runtime.close_all_now()
            return defer.Deferred.fromFuture(asyncio.ensure_future(_drain(runtime)))
        except Exception:
            logger.exception("drain on shutdown failed")
            return None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", drain)
    reactor.addSystemEventTrigger("after", "shutdown", _exit_unless_done)
    _redact_access_log()
    autobahn_protocol.pformat = pformat_lazily_for_connection_made  # type: ignore[assignment]
    return True


class _Pretty:
    """`pformat(value)` when, if ever, the log line is written."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)


_CONNECTION_MADE = autobahn_protocol.WebSocketProtocol._connectionMade.__code__


def pformat_lazily_for_connection_made(value: object, *args: Any, **kwargs: Any) -> Any:
    """autobahn pretty-prints every new connection's configuration for a debug log line, whether
    or not debug logging is on: about 9 % of an instance's CPU in a connect storm (measured with
    py-spy). For that one line the text is made only when the line is written; every other
    caller gets `pprint.pformat` as before."""
    if sys._getframe(1).f_code is _CONNECTION_MADE:
        return _Pretty(value)
    return pprint.pformat(value, *args, **kwargs)


def _redact_access_log() -> None:
    """daphne writes its access log itself, not through `logging`, so the redacting log filter
    never sees it; HTTP lines include the query string (WebSocket lines do not). A client that
    puts `?token=` on an HTTP route must not leave its token in the log."""
    original = AccessLogGenerator.write_entry
    if getattr(original, "redacts", False):
        return

    def write_entry(self, host, date, request, *args, **kwargs):
        return original(self, host, date, redact(request), *args, **kwargs)

    write_entry.redacts = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = write_entry


class LifespanApp:
    """ASGI lifespan handler for servers that send it (uvicorn, hypercorn)."""

    async def __call__(self, scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                tune_garbage_collector(settings.GC_THRESHOLD)
                try:
                    await ensure_runtime()
                except Exception as exc:  # report, do not hang the server
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                runtime = current_runtime()
                if runtime is not None:
                    await runtime.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return
