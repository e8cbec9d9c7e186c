"""Helpers for fault tests: health polling, timing of recoveries, a TCP proxy that can be cut,
a client that stops reading, and a look into a private Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import redis

from accounts.models import User
from tests.support.cluster import ServerProcess, free_port
from tests.support.db import db
from tests.support.users import allow_publishing

PASSWORD = "correct-horse-battery-staple"


def health(server: ServerProcess, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """GET health with a client-side bound: (status, body)."""
    try:
        with urllib.request.urlopen(f"{server.http}/api/v1/websocket/health", timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def until(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, every: float = 0.2, what: str = "condition"
) -> tuple[Any, float]:
    """Poll `check` until it returns something truthy; returns (that value, seconds it took)."""
    started = time.monotonic()
    while True:
        value = await check()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(every)


async def until_health(server: ServerProcess, status: int, timeout: float = 20.0) -> float:
    """Seconds until health answers `status`."""

    async def check() -> bool:
        return (await asyncio.to_thread(health, server))[0] == status

    return (await until(check, timeout=timeout, what=f"health {status} on {server.name}"))[1]


async def until_logged(server: ServerProcess, pattern: str, timeout: float = 10.0) -> float:
    """Seconds until the server's log has a line matching the regular expression `pattern`."""

    async def check() -> bool:
        return re.search(pattern, server.log_text()) is not None

    return (await until(check, timeout=timeout, every=0.05, what=f"{pattern!r} in {server.name}'s log"))[1]


async def staff_token(server: ServerProcess, name: str, **flags: Any) -> tuple[str, str]:
    """Register a user, give it `flags` (default: staff allowed to publish); returns (user_id, access)."""
    user_id, _ = await asyncio.to_thread(server.register, name)
    await db(User.objects.filter(pk=user_id).update)(**(flags or {"is_staff": True}))
    if not flags:
        await db(allow_publishing)(user_id)
    status, tokens = await asyncio.to_thread(
        server.request, "POST", "/api/v1/auth/token/", {"username": name, "password": PASSWORD}
    )
    assert status == 200, tokens
    return user_id, tokens["access"]


def rss(server: ServerProcess) -> int:
    """Resident memory of a server process, in bytes."""
    assert server.process is not None
    return psutil.Process(server.process.pid).memory_info().rss


def redis_at(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, decode_responses=True)


def presence_of(port: int, user_id: str) -> dict[str, str]:
    """The Redis presence hash of a user: connection id -> "<instance>|<endpoint>"."""
    client = redis_at(port)
    try:
        return client.hgetall(f"rpgrt:presence:{user_id}")
    finally:
        client.close()


class TcpProxy:
    """A TCP relay on a free port that the test can cut (every connection dropped, new ones
    refused) and restore: a database that becomes unreachable for a while."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)

    def cut(self) -> None:
        """Drop every relayed connection and stop listening (new connections are refused)."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not, and the
            # socket would go on accepting.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
            if self._thread is not None:
                self._thread.join(5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    def stop(self) -> None:
        self.cut()


class StalledClient:
    """A WebSocket client that completes the handshake, reads `connection_established`, and
    then never reads again, with a small receive buffer: a client that stopped reading."""

    def __init__(self, server: ServerProcess, path: str) -> None:
        self.server = server
        self.path = path
        self.sock = socket.socket()
        # Small buffer so the kernel does not hide the stall behind megabytes of buffering.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def open(self) -> StalledClient:
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", self.server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        received = b""
        while b"connection_established" not in received:
            chunk = self.sock.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 101"), received[:200]
        return self

    def read_until_dropped(self, timeout: float = 10.0) -> int:
        """Read what the server still sends until it closes or resets the socket; returns the
        byte count. Raises TimeoutError if the server keeps the socket open."""
        self.sock.settimeout(timeout)
        received = 0
        try:
            while chunk := self.sock.recv(65536):
                received += len(chunk)
        except TimeoutError:
            raise
        except ConnectionError:  # reset: the server aborted the connection
            pass
        return received

    def close(self) -> None:
        self.sock.close()


def raw_handshake(server: ServerProcess, path: str, headers: dict[str, str]) -> str:
    """Send a WebSocket upgrade with exactly these headers (Host included); returns the status line."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(4096).split(b"\r\n", 1)[0].decode()
