"""Combinations that work but are dangerous on a public server (`manage.py check --deploy`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from realtime.checks.values import TAG

LOCAL_HOSTS = frozenset({"localhost", ".localhost", "127.0.0.1", "[::1]", "::1"})
# Anything shorter is guessable by a scan; the list holds what example files and tutorials use.
WEAK_PASSWORD_LENGTH = 12
WEAK_PASSWORDS = frozenset({"postgres", "password", "secret", "changeme", "admin", "rpgrt", "root", "example"})


@register(Tags.security, TAG, deploy=True)
def check_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Combinations that work but are dangerous on a public server (`check --deploy`)."""
    messages: list[CheckMessage] = []
    public_hosts = [host for host in settings.ALLOWED_HOSTS if host not in LOCAL_HOSTS]
    if settings.DEBUG is True and public_hosts:
        messages.append(
            Error(
                f"DEBUG is on while ALLOWED_HOSTS names public hosts ({', '.join(public_hosts)}): error pages "
                "would show tracebacks and settings to anyone.",
                hint="Set DEBUG=false in production (and SECRET_KEY and ALLOWED_HOSTS, which it then requires).",
                id="realtime.E101",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        messages.append(
            Warning(
                "ALLOWED_HOSTS contains '*': any Host header is accepted, which opens the door to DNS rebinding "
                "against WebSocket handshakes and to poisoned links in e-mails.",
                hint="List the names clients use: ALLOWED_HOSTS=game.example.com (plus the ones health checks use).",
                id="realtime.W102",
            )
        )
    if getattr(settings, "WEBSOCKET_METRICS_PUBLIC", False) is True:
        messages.append(
            Warning(
                "WEBSOCKET_METRICS_PUBLIC is on: anyone can read /api/v1/websocket/metrics (instance names, "
                "connection counts, error rates).",
                hint="Set WEBSOCKET_METRICS_PUBLIC=false and read it with a staff token, or scrape /metrics "
                "on the internal network.",
                id="realtime.W103",
            )
        )
    if getattr(settings, "BEHIND_TLS_PROXY", False) is not True:
        messages.append(
            Warning(
                "BEHIND_TLS_PROXY is off: clients reach the server over plain ws:// and http://, so tokens, "
                "passwords and messages cross the network readable, and session cookies are not marked secure.",
                hint="Terminate TLS in the proxy (the bundled nginx does: docs/operations.md, Encryption in "
                "transit) and set BEHIND_TLS_PROXY=true.",
                id="realtime.W104",
            )
        )
    messages.extend(_database_password())
    return messages


def _database_password() -> Iterator[CheckMessage]:
    database = settings.DATABASES.get("default", {})
    if "postgresql" not in database.get("ENGINE", ""):
        return
    password = database.get("PASSWORD") or ""
    user = database.get("USER") or ""
    host = database.get("HOST") or ""
    if not password:
        # Local peer or trust authentication needs none; over the network it means anyone may connect.
        if host and not host.startswith("/") and host not in LOCAL_HOSTS:
            yield Warning(
                f"DATABASE_URL has no password for {host}.",
                hint="Give the database user a long random password and put it in DATABASE_URL "
                "(URL-encode special characters).",
                id="realtime.W105",
            )
        return
    if len(password) < WEAK_PASSWORD_LENGTH or password.lower() in WEAK_PASSWORDS or password == user:
        yield Error(
            f"The PostgreSQL password in DATABASE_URL is weak (shorter than {WEAK_PASSWORD_LENGTH} characters, "
            "the user name, or a well-known default).",
            hint="Set a long random password (with the bundled compose file: POSTGRES_PASSWORD, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`).",
            id="realtime.E105",
        )
