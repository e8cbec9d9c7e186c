"""How an encoded frame reaches one socket: a direct path under daphne, a queued path elsewhere.

Broadcast frames bypass the consumer entirely (no channel-layer queue, no `dispatch()`): the hub
hands one `OutboundFrame` to every local recipient's transport. Under daphne the WebSocket frame
bytes are built once per broadcast and written straight to the socket; under any other ASGI
server (and `WebsocketCommunicator` in tests) frames go through a per-connection queue drained by
the ASGI `send` callable. Both report a client that stops reading, so it can be disconnected
instead of growing server memory without bound.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import tcp as twisted_tcp

logger = logging.getLogger(__name__)


class OutboundFrame:
    """One server frame, encoded once and shared by every recipient."""

    __slots__ = ("_wire", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The complete unmasked WebSocket text frame (server side), built on first use."""
        if self._wire is None:
            self._wire = PreparedMessage(self.text.encode(), False, False, True).payloadHybi
        return self._wire


class Transport(Protocol):
    def write(self, frame: OutboundFrame) -> bool:
        """Queue or send a frame without blocking; False when the client is too far behind."""

    async def close(self, code: int) -> None:
        """Close after the frames already written."""

    def close_now(self, code: int) -> None:
        """Close after the frames already written, without awaiting (completes later on queued
        transports)."""

    def abort(self) -> None:
        """Drop the connection now (a client too slow to even read a close frame)."""

    def stop_reading(self) -> None:
        """Read nothing more from the client (closed for abuse: its flood costs nothing more)."""

    def pending_bytes(self) -> int: ...

    def gate_arrivals(self, gate: ArrivalGate) -> bool:
        """Run `gate` on every client frame as it arrives, before the server queues it for the
        application; True when this transport can (the caller then skips its own checks)."""


# `gate(payload, binary, queued)`: admit a client frame as it arrives (`queued`: frames already
# waiting for the application). A refused frame is never queued.
ArrivalGate = Callable[[bytes | str, bool, int], bool]


def _twisted_pending(tcp: Any) -> int:
    """Bytes Twisted holds for this socket (FileDescriptor internals, stable for a decade)."""
    try:
        return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen
    except AttributeError:
        return 0


def _release_http_channel(tcp: Any) -> None:
    """Detach the HTTP channel that carried the upgrade request from the TCP transport.

    daphne hands the socket to the WebSocket protocol but leaves Twisted's HTTPChannel
    registered as the transport's producer, with its idle timer still running: that timer
    (12 hours by default) would close a long-lived WebSocket, and the channel keeps the
    handshake's request objects (headers, query string with the token) alive for the whole
    connection. Neither is needed once the WebSocket is open.
    """
    channel = getattr(tcp, "producer", None)
    if channel is None or not hasattr(channel, "requests") or not hasattr(channel, "setTimeout"):
        return
    channel.setTimeout(None)
    tcp.unregisterProducer()
    channel.requests = []


# What autobahn and daphne keep of the opening handshake; read only while it is processed.
_HANDSHAKE_ATTRIBUTES = ("http_request_data", "http_headers", "http_request_params", "http_status_line")


def _release_handshake(protocol: Any) -> None:
    """Drop the parsed opening handshake once the WebSocket is open.

    A few kilobytes per connection (raw request, header and query dicts, each holding a copy of
    the token when it came in the query string); daphne keeps only the request's path for its
    logs, so the path stays.
    """
    if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return
    for name in _HANDSHAKE_ATTRIBUTES:
        if hasattr(protocol, name):
            setattr(protocol, name, None)
    request = getattr(protocol, "request", None)
    if request is not None:
        for name in ("headers", "params"):
            if hasattr(request, name):
                setattr(request, name, {})
    if hasattr(protocol, "_raw_query_string"):
        protocol._raw_query_string = b""


class DaphneTransport:
    """Writes prepared frames straight to daphne's socket when nothing is queued before them.

    Twisted's `transport.write` always buffers and waits for the next writable event (an
    epoll registration and a loop turn per message per socket); trying `socket.send` first,
    as asyncio's own transports do, removes that per-delivery cost. Whenever Twisted still
    holds unsent bytes we append to its buffer instead, so frame order is kept.
    """

    __slots__ = ("_limit", "_protocol", "_send", "_socket")

    def __init__(self, send: functools.partial, limit: int) -> None:
        self._send = send
        self._protocol = send.args[0]
        self._limit = limit
        tcp = getattr(self._protocol, "transport", None)
        self._socket = None
        _release_http_channel(tcp)
        _release_handshake(self._protocol)
        # TLS or wrapped transports must go through Twisted, which encrypts and frames.
        # Twisted drops `.socket` once the TCP connection is lost: a client that left while its
        # handshake waited gets no direct socket (writes then go nowhere), not an exception.
        if type(tcp) is twisted_tcp.Server and not getattr(tcp, "TLS", False):
            self._socket = getattr(tcp, "socket", None)

    @staticmethod
    def supports(send: Any) -> bool:
        return isinstance(send, functools.partial) and bool(send.args) and hasattr(send.args[0], "sendPreparedMessage")

    def write(self, frame: OutboundFrame) -> bool:
        protocol = self._protocol
        if protocol.state != protocol.STATE_OPEN:
            return True
        if protocol._perMessageCompress is not None:  # never negotiated by daphne; be safe anyway
            protocol.sendMessage(frame.text.encode(), False)
            return True
        tcp = protocol.transport
        if tcp is None or not tcp.connected or tcp.disconnecting:
            return True
        data = frame.wire
        sock = self._socket
        if sock is not None and not protocol.send_queue and _twisted_pending(tcp) == 0:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # let Twisted notice and report the broken connection
            if sent == len(data):
                return True
            data = data[sent:]
        tcp.write(data)
        return _twisted_pending(tcp) <= self._limit

    async def close(self, code: int) -> None:
        self.close_now(code)

    def close_now(self, code: int) -> None:
        # autobahn's public sendClose() refuses 1001 for a server; the frame method does not.
        protocol = self._protocol
        if protocol.state == protocol.STATE_OPEN:
            protocol.sendCloseFrame(code=code, isReply=False)

    def abort(self) -> None:
        tcp = getattr(self._protocol, "transport", None)
        if tcp is not None:
            tcp.abortConnection()

    def stop_reading(self) -> None:
        tcp = getattr(self._protocol, "transport", None)
        if tcp is not None and getattr(tcp, "connected", False):
            tcp.pauseProducing()  # the kernel's window fills and the client's sends block

    def gate_arrivals(self, gate: ArrivalGate) -> bool:
        """daphne puts every frame on the application's queue without bound as autobahn hands it
        over (`WebSocketProtocol.onMessage`); this runs `gate` first, in the same reactor
        callback, so limits act on arrival and a refused frame costs no queue slot."""
        protocol = self._protocol
        deliver = protocol.onMessage
        queue = getattr(protocol, "application_queue", None)
        if queue is None:
            return False

        def on_message(payload: bytes, is_binary: bool) -> None:
            if gate(payload, is_binary, queue.qsize()):
                deliver(payload, is_binary)

        protocol.onMessage = on_message
        return True

    def pending_bytes(self) -> int:
        tcp = getattr(self._protocol, "transport", None)
        return _twisted_pending(tcp) if tcp is not None else 0


class QueuedTransport:
    """Any ASGI server: a bounded per-connection queue drained by one short-lived task.

    The task exists only while frames are waiting, so an idle connection costs no task.
    """

    __slots__ = ("_closed", "_limit", "_queue", "_queued_bytes", "_send", "_task")

    def __init__(self, send: Any, limit: int) -> None:
        self._send = send
        self._queue: deque[dict[str, Any]] = deque()
        self._queued_bytes = 0
        self._task: asyncio.Task | None = None
        self._limit = limit
        self._closed = False

    def write(self, frame: OutboundFrame) -> bool:
        if self._closed:
            return True
        self._queue.append({"type": "websocket.send", "text": frame.text})
        self._queued_bytes += len(frame.text)
        self._kick()
        return self._queued_bytes <= self._limit

    async def close(self, code: int) -> None:
        self.close_now(code)
        await self.flush()

    def close_now(self, code: int) -> None:
        """Queue the close after the frames already written (the drain task sends it)."""
        if self._closed:
            return
        self._queue.append({"type": "websocket.close", "code": code})
        self._closed = True
        self._kick()

    def abort(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    def pending_bytes(self) -> int:
        return self._queued_bytes

    def stop_reading(self) -> None:
        return None  # the ASGI server reads; frames of a closing connection are dropped unhandled

    def gate_arrivals(self, gate: ArrivalGate) -> bool:
        return False  # the ASGI server queues frames where this transport cannot see them

    async def flush(self) -> None:
        task = self._task
        if task is not None and not task.done():
            await asyncio.shield(task)

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            message = self._queue.popleft()
            if message["type"] == "websocket.send":
                self._queued_bytes -= len(message["text"])
            try:
                await self._send(message)
            except Exception:  # the peer is gone; nothing more can be delivered
                logger.debug("send failed; dropping %d queued frames", len(self._queue))
                self._queue.clear()
                self._queued_bytes = 0
                return


def transport_for(send: Any, limit: int) -> Transport:
    if DaphneTransport.supports(send):
        return DaphneTransport(send, limit)
    return QueuedTransport(send, limit)
