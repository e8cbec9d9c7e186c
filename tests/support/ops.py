"""Helpers for operations tests against real processes: the admin over HTTP, commands as
processes, a private Redis Sentinel."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.cluster import ROOT, ServerProcess, free_port, redis_binary, wait_for_port

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class AdminSession:
    """A browser-like session on one instance's Django admin (cookies, CSRF token)."""

    def __init__(self, server: ServerProcess) -> None:
        self.base = server.http
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _open(self, path: str, data: list[tuple[str, str]] | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method="POST" if body is not None else "GET")
        try:
            with self.opener.open(request, timeout=15) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        return self._open(path)

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
        """GET the page for its CSRF token, then POST the form (redirects are followed)."""
        status, page = self.get(path)
        match = CSRF_FIELD.search(page)
        assert match, (status, page[:500])
        return self._open(path, [("csrfmiddlewaretoken", match.group(1)), *fields])

    def login(self, username: str, password: str) -> None:
        status, page = self.post_form("/admin/login/?next=/admin/", [("username", username), ("password", password)])
        assert status == 200 and "Log out" in page, page[:500]

    def action(self, changelist: str, action: str, ids: list[str]) -> str:
        status, page = self.post_form(
            changelist, [("action", action), ("index", "0"), *(("_selected_action", i) for i in ids)]
        )
        assert status == 200, page[:500]
        return page


@dataclass
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def manage(server: ServerProcess, *args: str, env: dict[str, str] | None = None) -> CommandResult:
    """Run `manage.py <args>` as its own process, configured like `server` (same DB and Redis)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**server.environment(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return CommandResult(result.returncode, result.stdout, result.stderr)


class SentinelServer:
    """A private Redis Sentinel watching one master (quorum 1, fast failure detection)."""

    MASTER = "mymaster"

    def __init__(self, master_port: int) -> None:
        self.port = free_port()
        self.master_port = master_port
        self._dir = tempfile.mkdtemp(prefix="rpgrt-sentinel-")
        self.process: subprocess.Popen | None = None

    def start(self) -> SentinelServer:
        config = Path(self._dir) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        self.process = subprocess.Popen(
            [redis_binary(), str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def master_port_now(self) -> int | None:
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            address = client.sentinel_get_master_addr_by_name(self.MASTER)
            return int(address[1]) if address else None
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
