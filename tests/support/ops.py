"""Helpers for operations tests against real instances: the admin over HTTP, commands as processes."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from tests.support.cluster import ROOT, ServerProcess

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
