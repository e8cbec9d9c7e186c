"""A real server for the client libraries' tests, and a small control route to act on it.

The server runs with a 1 s heartbeat and a 3 s silence timeout, so heartbeats, dead connections
and token expiry all happen within a test. The control route lets a test in another process
(the Node test runner) restart the server (its clients see 1001) and mint access tokens of any
lifetime, expired ones included.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from tests.support.cluster import Cluster, ServerProcess
from tests.support.db import db
from tests.support.users import PASSWORD

CLIENT_ENV = {
    "WEBSOCKET_HEARTBEAT_INTERVAL": "1",
    "WEBSOCKET_CONNECTION_TIMEOUT": "3",
}

_names = itertools.count(1)


def mint_token(user_id: str, lifetime: float) -> str:
    """An access token for `user_id` that expires `lifetime` seconds from now (negative: expired)."""
    token = AccessToken()
    token[api_settings.USER_ID_CLAIM] = str(user_id)
    token.set_exp(lifetime=timedelta(seconds=lifetime))
    return str(token)


class Control:
    """`POST /restart` (SIGTERM, then start again on the same port) and `POST /token`
    (`{"user_id", "lifetime"}` → `{"token"}`), served from a thread of the test process."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self._lock = threading.Lock()
        control = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                try:
                    status, answer = control.handle(self.path, body)
                except Exception as exc:
                    status, answer = 500, {"error": repr(exc)}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/restart":
            with self._lock:
                code = self.server.terminate(20)
                self.server.start()
            return 200, {"exit_code": code}
        if path == "/token":
            return 200, {"token": mint_token(body["user_id"], float(body["lifetime"]))}
        return 404, {"error": f"no route {path}"}

    def start(self) -> Control:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker) -> Iterator[tuple[ServerProcess, Control]]:
    """One instance with a private Redis, and its control route (one set per test module)."""
    with django_db_blocker.unblock():
        cluster = Cluster(size=1, env=CLIENT_ENV).start()
    control = Control(cluster[0]).start()
    try:
        yield cluster[0], control
    finally:
        control.stop()
        cluster.stop()


async def register(server: ServerProcess, prefix: str, **fields: Any) -> dict[str, str]:
    """A new player (over HTTP, as any client would), optionally with model fields set:
    `{"id", "username", "password", "access"}`."""
    username = f"{prefix}{next(_names)}x{id(object()) % 100000}"
    user_id, access = await asyncio.to_thread(server.register, username, PASSWORD)
    if fields:
        await db(User.objects.filter(pk=user_id).update)(**fields)
    return {"id": user_id, "username": username, "password": PASSWORD, "access": access}


async def players(server: ServerProcess) -> dict[str, dict[str, str]]:
    """The cast of the client tests: two players, a banned one and a superuser (who may publish)."""
    return {
        "alice": await register(server, "alice"),
        "bob": await register(server, "bob"),
        "banned": await register(server, "banned", banned_until=timezone.now() + timedelta(days=1)),
        "staff": await register(server, "staff", is_staff=True, is_superuser=True),
    }
