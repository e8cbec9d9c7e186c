"""One resilient connection to one rpgrealtime endpoint, on asyncio and `websockets`.

The token in the `Authorization` header (or the `bearer` subprotocol), pongs for the server's
pings, dead-connection detection, reconnects that follow the close codes, token renewal in band,
stream recovery, and requests matched by `id` (docs/clients.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import websockets
from websockets.asyncio.client import ClientConnection, connect

from rpgrealtime.client.rules import Backoff, CloseAction, CloseCode, close_action
from rpgrealtime.client.streams import Resync, StreamTracker
from rpgrealtime.client.tokens import renewal_delay

logger = logging.getLogger(__name__)

State = Literal["idle", "connecting", "open", "reconnecting", "closed"]
TokenReason = Literal["connect", "reconnect", "refresh"]
Handler = Callable[[Any], Awaitable[None] | None]
TokenSource = Callable[[TokenReason], Awaitable[str] | str]

# Errors that explain why the server is about to close the connection.
CONNECTION_ERRORS = frozenset(
    {
        "authentication_required",
        "invalid_token",
        "token_expired",
        "banned",
        "kicked",
        "heartbeat_timeout",
        "server_shutting_down",
        "too_many_connections",
        "unavailable",
    }
)


class ServerError(Exception):
    """An `error` frame from the server, or a local one (`not_connected`, `timeout`)."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(frame.get("message") or frame.get("code"))
        self.code: str | None = frame.get("code")
        self.details: Any = frame.get("details")
        self.frame = frame


class ConnectionRefused(Exception):
    """The server refused the connection for good (4401 other than expiry, 4403): a person must act."""

    def __init__(self, code: int | None, error: dict[str, Any] | None) -> None:
        super().__init__((error or {}).get("message") or f"connection refused with close code {code}")
        self.code = code
        self.error = error


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """A connection closed (or an attempt failed), and what the client does next."""

    code: int | None  # 1006 for a dropped or dead connection; None when no connection was made
    reason: str
    error: dict[str, Any] | None  # the `error` frame the server sent before closing
    action: CloseAction
    delay: float | None  # seconds until the next attempt; None when the client stopped


@dataclass(frozen=True, slots=True)
class StateEvent:
    state: State
    previous: State
    reconnected: bool = False
    resuming: bool = False
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class _Closed:
    code: int | None
    reason: str
    error: dict[str, Any] | None


def _protocol_at_least(version: Any, wanted: tuple[int, int]) -> bool:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= wanted


class RealtimeClient:
    """A client for one endpoint, e.g. `RealtimeClient("wss://host/ws/chat", get_token=...)`.

    `get_token(reason)` (sync or async) is asked for a token before every connection and to renew
    it; for reason "refresh" it must return a new one. Handlers registered with `on()` get every
    server frame of a type ("*": all), plus the client's own events: "state" (StateEvent),
    "close" (CloseEvent) and "resync" (Resync). A handler that is a coroutine function is started
    as a task, so it may await requests.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenSource | None = None,
        token_transport: Literal["header", "subprotocol"] = "header",
        streams: dict[str, dict[str, Any]] | None = None,
        resume: bool = True,
        request_timeout: float = 10.0,
        # `resumed` comes after the connect completes and the missed frames are sent: in a
        # reconnect storm that takes longer than a request, and giving up re-reads everything.
        resume_timeout: float = 30.0,
        # A handshake or `connection_established` that never comes (a listen queue overflowing in
        # a reconnect storm answers after 1, 3, 7 s of SYN retries): give up and try again.
        connect_timeout: float = 15.0,
        # Dead after heartbeat_interval + this with no frame at all: 35 s at the default 30 s.
        heartbeat_grace: float = 5.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        rate_limited_delay: float = 15.0,  # after 4429: wait 15–30 s
        token_refresh_lead: float = 60.0,
        max_token_refreshes: int = 3,  # 4401 token_expired again and again: stop
        rng: Callable[[], float] = random.random,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self._get_token: TokenSource | None = get_token or ((lambda reason: token) if token else None)
        self.token_transport = token_transport
        self.resume = resume
        self.request_timeout = request_timeout
        self.resume_timeout = resume_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat_grace = heartbeat_grace
        self.rate_limited_delay = rate_limited_delay
        self.token_refresh_lead = token_refresh_lead
        self.max_token_refreshes = max_token_refreshes
        self.connect_options = dict(connect_options or {})
        self.state: State = "idle"
        self.established: dict[str, Any] | None = None
        self.connects = 0
        self.last_close: CloseEvent | None = None
        self.supports_resume = False
        self.streams = StreamTracker(streams)
        self._initial_streams = bool(streams)
        self._backoff = Backoff(backoff_initial, backoff_max, rng)
        self._listeners: dict[str, list[Handler]] = {}
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._last_error: dict[str, Any] | None = None
        self._token_refreshes = 0
        self._renew_at = float("inf")
        self._renew_timer: asyncio.TimerHandle | None = None
        self._renewing = False
        self._resume_id: str | None = None
        self._resume_deadline: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- events -------------------------------------------------------------------------------

    def on(self, event_type: str, handler: Handler) -> Callable[[], None]:
        """Call `handler(event)` for every event of `event_type`; returns a function that removes it."""
        self._listeners.setdefault(event_type, []).append(handler)
        return lambda: self.off(event_type, handler)

    def off(self, event_type: str, handler: Handler) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[event_type].remove(handler)

    async def wait_for(
        self, event_type: str, predicate: Callable[[Any], bool] | None = None, timeout: float | None = None
    ) -> Any:
        """The next event of `event_type` that `predicate` accepts."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def catch(event: Any) -> None:
            if not future.done() and (predicate is None or predicate(event)):
                future.set_result(event)

        off = self.on(event_type, catch)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            off()

    def _emit(self, event_type: str, event: Any) -> None:
        for handler in list(self._listeners.get(event_type, ())):
            try:
                outcome = handler(event)
            except Exception:
                logger.exception("rpgrealtime client: %s handler failed (%s)", event_type, self.url)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.ensure_future(outcome)
                self._tasks.add(task)
                task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("rpgrealtime client: handler failed (%s)", self.url, exc_info=task.exception())

    def _deliver(self, frame: dict[str, Any]) -> None:
        self._emit(str(frame.get("type")), frame)
        self._emit("*", frame)

    def _set_state(self, state: State, **extra: Any) -> None:
        previous, self.state = self.state, state
        self._emit("state", StateEvent(state, previous, **extra))

    # --- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Connect (if not connected yet); returns the next `connection_established`.

        Raises ConnectionRefused when the server refuses for good before that.
        """
        if self.state == "open" and self.established is not None:
            return self.established
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.create_task(self._supervise(), name=f"rpgrealtime-client {self.url}")
        return await waiter

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "client closing") -> None:
        """Close for good."""
        self._closing = True
        self._wake.set()
        self._cancel_renewal()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code, reason), 3)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        if self.state != "closed":
            self._set_state("closed")
        self._settle(ConnectionRefused(code, {"code": "closed", "message": "The client was closed."}))

    async def __aenter__(self) -> RealtimeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def reconnect_now(self) -> None:
        """Skip the wait before the next attempt; after a refusal, try once more (a person decided)."""
        self._backoff.reset()
        self._token_refreshes = 0
        if self.state == "reconnecting":
            self._wake.set()
        elif self.state == "closed" and not self._closing and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._supervise("reconnect"), name=f"rpgrealtime-client {self.url}")

    def _settle(self, result: dict[str, Any] | BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if isinstance(result, BaseException):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def _token_stale(self) -> bool:
        return asyncio.get_running_loop().time() >= self._renew_at

    async def _supervise(self, reason: TokenReason = "connect") -> None:
        try:
            while True:
                closed = await self._attempt(reason)
                if self._closing:
                    return
                action = close_action(closed.code, (closed.error or {}).get("code"))
                if action == "refresh":
                    self._token_refreshes += 1
                    if self._token_refreshes > self.max_token_refreshes or self._get_token is None:
                        action = "stop"
                if action == "stop":
                    self.last_close = CloseEvent(closed.code, closed.reason, closed.error, action, None)
                    logger.warning("%s refused (%s %s): not reconnecting", self.url, closed.code, closed.error)
                    self._emit("close", self.last_close)
                    self._set_state("closed")
                    self._settle(ConnectionRefused(closed.code, closed.error))
                    return
                if action == "refresh":
                    delay = 0.0 if self._token_refreshes == 1 else self._backoff.next()
                elif action == "reconnect_later":
                    delay = self._backoff.long(self.rate_limited_delay)
                else:
                    delay = self._backoff.next()
                self.last_close = CloseEvent(closed.code, closed.reason, closed.error, action, delay)
                logger.info("%s closed (%s %s); reconnecting in %.1f s", self.url, closed.code, closed.reason, delay)
                self._emit("close", self.last_close)
                self._set_state("reconnecting", delay=delay)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self._closing:
                    return
                reason = "refresh" if action == "refresh" or self._token_stale() else "reconnect"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("rpgrealtime client for %s failed", self.url)
            self._set_state("closed")
            self._settle(exc)

    async def _attempt(self, reason: TokenReason) -> _Closed:
        self._set_state("connecting")
        token: str | None = None
        if self._get_token is not None:
            try:
                token = await self._fetch_token(reason)
            except Exception as exc:
                return _Closed(None, f"no token: {exc!r}", None)
            self._accept_token(token)
        options: dict[str, Any] = {
            "open_timeout": self.connect_timeout,
            # One liveness rule, the protocol's: the server's pings and heartbeat_interval.
            "ping_interval": None,
            "close_timeout": 2,
            **self.connect_options,
        }
        if token and self.token_transport == "subprotocol":
            options["subprotocols"] = ["bearer", token]
        elif token:
            options["additional_headers"] = {"Authorization": f"Bearer {token}"}
        try:
            ws = await connect(self.url, **options)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
            return _Closed(CloseCode.ABNORMAL, f"cannot connect: {exc}", None)
        try:
            return await self._session(ws)
        finally:
            self._ws = None
            self._lost_connection()
            if ws.state is not websockets.State.CLOSED:
                ws.transport.abort()

    async def _fetch_token(self, reason: TokenReason) -> str:
        assert self._get_token is not None
        token = self._get_token(reason)
        if inspect.isawaitable(token):
            token = await token
        return str(token)

    def _accept_token(self, token: str) -> None:
        self._token = token
        self._cancel_renewal()
        delay = renewal_delay(token, self.token_refresh_lead)
        loop = asyncio.get_running_loop()
        self._renew_at = float("inf") if delay is None else loop.time() + delay
        if delay is not None:
            self._renew_timer = loop.call_later(delay, self._renew_due)

    def _cancel_renewal(self) -> None:
        if self._renew_timer is not None:
            self._renew_timer.cancel()
            self._renew_timer = None

    def _renew_due(self) -> None:
        # A connection not open yet renews once established (or its next attempt asks for a new token).
        if self.state == "open":
            self._spawn(self._renew_in_band())

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._handler_done)

    def _lost_connection(self) -> None:
        self._resume_id = None
        self._resume_deadline = None
        self.streams.cancel()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ServerError({"code": "not_connected", "message": "The connection closed."}))

    async def _session(self, ws: ClientConnection) -> _Closed:
        self._ws = ws
        self._last_error = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        dead_after = None
        while True:
            wait = deadline - loop.time()
            if self._resume_deadline is not None:
                wait = min(wait, self._resume_deadline - loop.time())
            try:
                text = await asyncio.wait_for(ws.recv(), max(0.0, wait))
            except TimeoutError:
                if self._resume_deadline is not None and loop.time() >= self._resume_deadline:
                    self._resume_id = self._resume_deadline = None
                    self._run(self.streams.fail("resume_failed"))
                    continue
                # Nothing heard: the path to the server is dead even if the socket has not noticed.
                ws.transport.abort()
                why = f"no frame for {dead_after:g} s" if dead_after else "no connection_established in time"
                return _Closed(CloseCode.ABNORMAL, why, None)
            except websockets.ConnectionClosed as exc:
                if exc.rcvd is None:
                    return _Closed(CloseCode.ABNORMAL, "connection lost", self._last_error)
                return _Closed(exc.rcvd.code, exc.rcvd.reason, self._last_error)
            try:
                frame = json.loads(text)
            except (TypeError, ValueError):
                continue  # the server only sends JSON objects
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                continue
            if frame["type"] == "connection_established":
                await self._established(frame)
            else:
                await self._receive(frame)
            if self.established is not None and self.state == "open":
                dead_after = float(self.established.get("heartbeat_interval") or 30) + self.heartbeat_grace
                deadline = loop.time() + dead_after

    async def _established(self, frame: dict[str, Any]) -> None:
        self.established = frame
        self.connects += 1
        self._backoff.reset()
        self._token_refreshes = 0
        self._last_error = None
        self.supports_resume = _protocol_at_least(frame.get("protocol"), (1, 1))
        reconnected = self.connects > 1
        resuming = False
        if self.resume and self.supports_resume:
            self.streams.adopt(frame.get("streams"))
            # Resume is the first frame on the new connection, before anything the app sends.
            if len(self.streams) and (reconnected or self._initial_streams):
                resuming = await self._send_resume()
        self._set_state("open", reconnected=reconnected, resuming=resuming)
        self._deliver(frame)
        self._settle(frame)
        if self._get_token is not None and self._token_stale():
            self._spawn(self._renew_in_band())

    async def _send_resume(self) -> bool:
        resume_id = f"p{next(self._ids)}"
        streams = self.streams.begin()
        if not await self._send_now({"type": "resume", "streams": streams, "id": resume_id}):
            self.streams.cancel()
            return False
        self._resume_id = resume_id
        self._resume_deadline = asyncio.get_running_loop().time() + self.resume_timeout
        return True

    async def _receive(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ping":
            await self._send_now({"type": "pong"})
        if kind == "error" and frame.get("code") in CONNECTION_ERRORS and "id" not in frame:
            self._last_error = frame
        frame_id = frame.get("id")
        if frame_id is not None and frame_id == self._resume_id:
            self._resume_id = self._resume_deadline = None
            if kind == "error":
                self._run(self.streams.fail("resume_failed"))
            else:
                self._run(self.streams.finish(frame))
                self._deliver(frame)
            return
        waiter = self._pending.pop(frame_id, None) if frame_id is not None else None
        if waiter is not None and not waiter.done():
            if kind == "error":
                waiter.set_exception(ServerError(frame))
                return  # the caller handles its own errors
            waiter.set_result(frame)
        self._run(self.streams.receive(frame))

    def _run(self, steps: list[dict[str, Any] | Resync]) -> None:
        for step in steps:
            if isinstance(step, Resync):
                logger.info("%s: stream %s must be re-read (%s)", self.url, step.stream, step.reason)
                self._emit("resync", step)
            else:
                self._deliver(step)

    async def _renew_in_band(self) -> None:
        if self._renewing:
            return
        self._renewing = True
        try:
            try:
                token = await self._fetch_token("refresh")
            except Exception as exc:
                # The token source is unreachable: reconnects will ask again; so will a later renewal.
                logger.info("%s: token renewal failed (%r)", self.url, exc)
                if self.state == "open":
                    self._renew_timer = asyncio.get_running_loop().call_later(5.0, self._renew_due)
                return
            if self.state == "closed":
                return
            self._accept_token(token)
            if self.state != "open":
                return  # the next connection uses it
            ws = self._ws
            try:
                await self.request({"type": "token_refresh", "token": token})
            except ServerError as exc:
                if ws is not self._ws or self.state != "open" or exc.code == "not_connected":
                    return
                # Refused: the connection would be closed at expiry; reconnect with the new token now.
                logger.info("%s: token hand-over refused (%s); reconnecting", self.url, exc.code)
                if ws is not None:
                    await ws.close(CloseCode.NORMAL, "token hand-over refused")
        finally:
            self._renewing = False

    # --- sending ------------------------------------------------------------------------------

    async def _send_now(self, frame: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            return False
        return True

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame now; False when not connected (nothing is queued: a stale move helps nobody)."""
        if self.state != "open":
            return False
        return await self._send_now(frame)

    async def request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send `frame` with an `id`; return the reply repeating it.

        Raises ServerError for its `error` reply, or with code `not_connected` / `timeout`.
        """
        frame_id = frame.get("id")
        if frame_id is None:
            frame_id = f"p{next(self._ids)}"
        if frame_id in self._pending:
            raise ServerError({"code": "duplicate_id", "message": f"a request with id {frame_id} is waiting already"})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        try:
            if not await self.send({**frame, "id": frame_id}):
                raise ServerError({"code": "not_connected", "message": f"{self.url} is not connected right now."})
            return await asyncio.wait_for(future, self.request_timeout if timeout is None else timeout)
        except TimeoutError:
            raise ServerError({"code": "timeout", "message": "The server did not answer in time."}) from None
        finally:
            if self._pending.get(frame_id) is future:
                del self._pending[frame_id]
