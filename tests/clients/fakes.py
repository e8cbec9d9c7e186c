"""Stand-ins for the client tests: a fake endpoint that emulates stream recovery and can close with
any code on demand, and JWT-shaped tokens (the TCP proxy is tests/support/proxy.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve


def fake_jwt(lifetime: float, **claims: Any) -> str:
    """An unsigned JWT-shaped token with the given lifetime: enough for the client's renewal timer."""
    now = int(time.time())

    def encode(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'none'})}.{encode({'iat': now, 'exp': now + lifetime, **claims})}.sig"


@dataclass
class FakeStream:
    epoch: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def position(self) -> dict[str, Any]:
        return {"offset": self.dropped + len(self.frames), "epoch": self.epoch}


@dataclass
class FakeConnection:
    ws: ServerConnection
    token: str | None
    received: list[dict[str, Any]] = field(default_factory=list)
    established: bool = False

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self, code: int, error: dict[str, Any] | None = None) -> None:
        if error:
            await self.send({"type": "error", **error})
        await self.ws.close(code)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self.ws.transport.abort()


class FakeServer:
    """An endpoint that does what docs/protocol.md says about streams, resume and close codes."""

    def __init__(self, *, heartbeat_interval: float = 30, protocol: str | None = "1.1") -> None:
        self.heartbeat_interval = heartbeat_interval
        self.protocol = protocol
        self.streams: dict[str, FakeStream] = {}
        self.connections: list[FakeConnection] = []
        self.tokens: list[str | None] = []
        self.refusals: list[tuple[int, dict[str, Any] | None]] = []
        self.silent_connections = 0  # accept this many and then say nothing
        self.on_resume: Callable[[FakeConnection, dict[str, Any]], Awaitable[bool]] | None = None
        self.on_frame: Callable[[FakeConnection, dict[str, Any]], dict[str, Any] | None] | None = None
        self.answer_resume = True
        self._server: Server | None = None

    async def start(self) -> FakeServer:
        self._server = await serve(
            self._serve,
            "127.0.0.1",
            0,
            select_subprotocol=lambda connection, offered: "bearer" if "bearer" in offered else None,
            ping_interval=None,
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws/game"
        return self

    async def stop(self) -> None:
        assert self._server is not None
        for conn in self.connections:
            conn.abort()
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    # --- streams ------------------------------------------------------------------------------

    def stream(self, name: str, epoch: str = "e1") -> FakeStream:
        return self.streams.setdefault(name, FakeStream(epoch))

    async def publish(self, name: str, body: dict[str, Any], *, send: bool = True) -> dict[str, Any]:
        stream = self.stream(name)
        frame = {**body, "stream": name, "offset": stream.dropped + len(stream.frames) + 1, "epoch": stream.epoch}
        stream.frames.append(frame)
        if send:
            for conn in self.open():
                await conn.send(frame)
        return frame

    def restart_stream(self, name: str, epoch: str) -> None:
        self.streams[name] = FakeStream(epoch)

    def forget(self, name: str, count: int) -> None:
        stream = self.stream(name)
        del stream.frames[:count]
        stream.dropped += count

    async def replay(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        answer: dict[str, Any] = {}
        for name, asked in (frame.get("streams") or {}).items():
            stream = self.streams.get(name)
            if stream is None:
                answer[name] = {"recovered": False, "reason": "unknown_stream", "offset": 0, "epoch": ""}
            elif stream.epoch != asked["epoch"]:
                answer[name] = {"recovered": False, "reason": "epoch_changed", **stream.position()}
            elif asked["offset"] < stream.dropped:
                answer[name] = {"recovered": False, "reason": "too_old", **stream.position()}
            else:
                missed = [f for f in stream.frames if f["offset"] > asked["offset"]]
                for replayed in missed:
                    await conn.send(replayed)
                answer[name] = {"recovered": True, "missed": len(missed), **stream.position()}
        await conn.send({"type": "resumed", "id": frame.get("id"), "streams": answer})

    # --- connections --------------------------------------------------------------------------

    def open(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if conn.established and conn.ws.close_code is None]

    def last(self) -> FakeConnection:
        return self.connections[-1]

    async def next_connection(self, after: int, timeout: float = 5.0) -> FakeConnection:
        async with asyncio.timeout(timeout):
            while len(self.connections) <= after or not self.connections[after].established:
                await asyncio.sleep(0.005)
        return self.connections[after]

    async def _serve(self, ws: ServerConnection) -> None:
        authorization = ws.request.headers.get("Authorization") if ws.request else None
        offered = [p.strip() for p in (ws.request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        token = authorization.removeprefix("Bearer ") if authorization else (offered[1] if len(offered) > 1 else None)
        self.tokens.append(token)
        conn = FakeConnection(ws, token)
        self.connections.append(conn)
        if self.refusals:
            code, error = self.refusals.pop(0)
            await conn.close(code, error)
            return
        if self.silent_connections:
            self.silent_connections -= 1
            await ws.wait_closed()
            return
        established: dict[str, Any] = {
            "type": "connection_established",
            "connection_id": f"c{len(self.connections)}",
            "endpoint": "game",
            "user": {"id": "u-1", "username": "alice"},
            "heartbeat_interval": self.heartbeat_interval,
            "server_time": "2026-11-26T10:00:00.000Z",
        }
        if self.protocol:
            established["protocol"] = self.protocol
            established["streams"] = {name: stream.position() for name, stream in self.streams.items()}
        await conn.send(established)
        conn.established = True
        with contextlib.suppress(Exception):
            async for text in ws:
                frame = json.loads(text)
                conn.received.append(frame)
                await self._answer(conn, frame)

    async def _answer(self, conn: FakeConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "resume" and self.protocol:
            if self.on_resume is not None and await self.on_resume(conn, frame):
                return
            if self.answer_resume:
                await self.replay(conn, frame)
        elif kind == "ping":
            await conn.send({"type": "pong", "timestamp": "2026-11-26T10:00:00.000Z", "id": frame.get("id")})
        elif kind == "token_refresh":
            conn.token = frame["token"]
            await conn.send({"type": "token_refreshed", "expires_at": "2026-11-26T10:15:00.000Z", "id": frame["id"]})
        elif self.on_frame is not None and (reply := self.on_frame(conn, frame)) is not None:
            await conn.send(reply)
