"""A TCP proxy between a client and a server, on the test's event loop: it cuts connections (a
reset, as when an instance dies), stops forwarding without closing anything (a silent drop) or
refuses new ones, none of which a server can fake. `WebSocketProxy` does that to WebSocket
connections only and lets a page's other HTTP requests through."""

from __future__ import annotations

import asyncio
import contextlib

Pair = tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[asyncio.Task[None]]]


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self._cuttable: list[Pair] = []
        self._others: list[Pair] = []  # passed through untouched until stop()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._pair, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _first_bytes(self, reader: asyncio.StreamReader) -> tuple[bytes, bool] | None:
        """What was read before forwarding starts, and whether the connection may be cut (None:
        drop it). Every connection may be cut here."""
        return b"", True

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await self._first_bytes(reader)
        if first is None or (first[1] and self.refusing):
            writer.transport.abort()
            return
        prefix, cuttable = first
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up_writer.write(prefix)
        tasks = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        (self._cuttable if cuttable else self._others).append((writer, up_writer, tasks))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    def stall(self) -> None:
        """Stop forwarding on every open connection, closing nothing; new connections still work."""
        for _, _, tasks in self._cuttable:
            for task in tasks:
                task.cancel()

    def reset(self) -> None:
        """Cut every open connection on both sides."""
        self._abort(self._cuttable)

    @staticmethod
    def _abort(pairs: list[Pair]) -> None:
        for client, upstream, tasks in pairs:
            for task in tasks:
                task.cancel()
            client.transport.abort()
            upstream.transport.abort()
        pairs.clear()

    async def stop(self) -> None:
        self._abort(self._cuttable)
        self._abort(self._others)
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)


class WebSocketProxy(TcpProxy):
    """Between a page and the server: only requests for /ws/… can be cut, stalled or refused."""

    async def _first_bytes(self, reader: asyncio.StreamReader) -> tuple[bytes, bool] | None:
        try:
            request_line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        return request_line, request_line.startswith(b"GET /ws/")
