"""Log output: `LOG_FORMAT=json` is one JSON object per line with the instance and, for code running
for a connection, its id, user and endpoint (`bind_connection`); tokens never reach a line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextvars import copy_context

import pytest

from rpgrealtime.logging import ConnectionContextFilter, JsonFormatter, PlainFormatter, bind_connection
from tests.support.cluster import ROOT, ServerProcess

# A JWT's shape (header.payload.signature); the redaction works on the shape, not the signature.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
BASE_FIELDS = {"time", "level", "logger", "message", "instance"}
CONNECTION_FIELDS = {"connection_id", "user_id", "endpoint"}

SCRIPT = f"""
import asyncio, logging
from rpgrealtime.logging import bind_connection

log = logging.getLogger("realtime.consumers.probe")
log.warning("before any connection")
log.warning("GET /api/v1/auth/me/?token=%s", "{TOKEN}")

async def connection():
    bind_connection(connection_id="c0ffee", user_id="u-1", endpoint="chat")
    log.warning("inside the connection")
    await asyncio.to_thread(log.warning, "on a database thread of the connection")

async def other_connection():
    await asyncio.sleep(0.01)
    log.warning("another task")

async def main():
    await asyncio.gather(connection(), other_connection())

asyncio.run(main())
try:
    raise ValueError("bad header Authorization: Bearer {TOKEN}")
except ValueError:
    log.exception("failed")
"""


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "LOG_"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base", "DEBUG": "true", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not one JSON object per line: {line!r}")
    return parsed


def test_json_logs_from_manage_py_parse_line_by_line_with_connection_fields():
    result = run_manage("shell", "-c", SCRIPT, LOG_FORMAT="json", INSTANCE_ID="app7")
    assert result.returncode == 0, result.stderr
    records = {record["message"]: record for record in json_lines(result.stderr)}
    for record in records.values():
        assert set(record) >= BASE_FIELDS, record
        assert record["instance"] == "app7" and record["logger"] == "realtime.consumers.probe"
        assert record["time"].endswith("Z") and record["level"] in ("WARNING", "ERROR")
    for message in ("inside the connection", "on a database thread of the connection"):
        assert {k: records[message][k] for k in CONNECTION_FIELDS} == {
            "connection_id": "c0ffee",
            "user_id": "u-1",
            "endpoint": "chat",
        }
    for message in ("before any connection", "another task", "failed"):
        assert not CONNECTION_FIELDS & set(records[message]), records[message]
    # Tokens are gone from the message and from the traceback, which stays on its one line.
    assert TOKEN not in result.stderr
    assert "token=[redacted]" in records["GET /api/v1/auth/me/?token=[redacted]"]["message"]
    assert "Bearer [redacted]" in records["failed"]["exc_info"] and "ValueError" in records["failed"]["exc_info"]


def test_plain_logs_stay_plain_and_redacted():
    result = run_manage("shell", "-c", SCRIPT, INSTANCE_ID="app7")
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stderr
    lines = result.stderr.splitlines()
    inside = next(line for line in lines if "inside the connection" in line)
    assert " WARNING realtime.consumers.probe inside the connection" in inside
    assert inside.endswith("connection_id=c0ffee user_id=u-1 endpoint=chat")
    assert not lines[0].startswith("{")


@pytest.mark.integration
def test_json_logs_of_a_daphne_process(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = ServerProcess("jsonlog", redis=None, env={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
        environment = server.environment()
    # stdout carries daphne's access log, which is its own format; the log proper is stderr.
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            server.command(), cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_until_answering(process, server.http)
            # A 404 and a refused token: django.request logs both; neither may leak the token.
            for path, headers in ((f"/no-such-page?token={TOKEN}", {}), ("/api/v1/auth/me/", BEARER)):
                request = urllib.request.Request(server.http + path, headers=headers)
                with pytest.raises(urllib.error.HTTPError):
                    urllib.request.urlopen(request, timeout=10)
        finally:
            process.terminate()
            process.wait(30)
        stderr.seek(0)
        text = stderr.read()
    records = json_lines(text)
    assert all(set(record) >= BASE_FIELDS for record in records), text[-2000:]
    assert all(record["instance"] == server.instance_id for record in records)
    loggers = {record["logger"] for record in records}
    assert {"daphne.server", "django.request", "realtime.runtime"} <= loggers, loggers
    assert TOKEN not in text


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def wait_until_answering(process: subprocess.Popen, base: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited at start"
        try:
            urllib.request.urlopen(f"{base}/api/v1/websocket/health", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, even if unhealthy
        except OSError:
            time.sleep(0.1)
    pytest.fail("the server did not answer")


# --- the pieces, in process -----------------------------------------------------------------------


def make_record(message: str = "hello", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("realtime.probe", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_each_task_logs_its_own_connection():
    context_filter = ConnectionContextFilter(instance="app1")
    seen: dict[str, str] = {}

    async def connection(name: str) -> None:
        bind_connection(connection_id=name, user_id=None, endpoint="game")
        await asyncio.sleep(0.01)  # the other task binds meanwhile
        record = make_record()
        context_filter.filter(record)
        seen[name] = record.connection_id

    async def both() -> None:
        await asyncio.gather(connection("a"), connection("b"))

    copy_context().run(asyncio.run, both())
    assert seen == {"a": "a", "b": "b"}


def test_explicit_fields_win_over_the_bound_connection():
    def body() -> logging.LogRecord:
        bind_connection(connection_id="bound", user_id="u", endpoint="world")
        record = make_record(connection_id="explicit")
        ConnectionContextFilter(instance="app1").filter(record)
        return record

    record = copy_context().run(body)
    assert record.connection_id == "explicit" and record.instance == "app1"


def test_anonymous_connections_log_a_null_user():
    def body() -> dict:
        bind_connection(connection_id="c1", user_id=None, endpoint="world")
        record = make_record("moved")
        ConnectionContextFilter(instance="app1").filter(record)
        return json.loads(JsonFormatter().format(record))

    line = copy_context().run(body)
    assert line["user_id"] is None and line["endpoint"] == "world" and line["message"] == "moved"


def test_formatters_redact_tokens_in_any_field():
    record = make_record("ok", header=f"Bearer {TOKEN}")
    assert TOKEN not in JsonFormatter().format(record)
    assert TOKEN not in PlainFormatter().format(make_record(f"token={TOKEN}"))
