"""The JavaScript client (`clients/js`) under Node's test runner, against a real server.

This test starts the server (a private Redis and daphne), creates the players, and runs
`node --test clients/js/test/`: the fake-server tests, and `server.test.js`, which talks to
this server through the environment set here. Node and npm must be installed; the client's
development dependencies are installed with `npm ci` when missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.clients.conftest import players
from tests.support.cluster import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

JS = ROOT / "clients" / "js"


def node_ready() -> None:
    """Fail, saying what to install, when Node or the dev dependencies are missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("The JavaScript client's tests need Node.js 18+ and npm on PATH.", pytrace=False)
    lock = JS / "package-lock.json"
    stamp = JS / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=300)


async def test_js_client_against_a_real_server(live):
    server, control = live
    node_ready()
    cast = await players(server)
    env = {
        **os.environ,
        "RPGRT_HTTP": server.http,
        "RPGRT_WS": server.ws,
        "RPGRT_CONTROL": control.url,
        "RPGRT_USERS": json.dumps(cast),
        "RPGRT_HEARTBEAT": "1",
    }
    # The output goes to a file as it comes, so a run that hangs can be watched (and is reported).
    log = Path(tempfile.gettempdir()) / f"rpgrt-js-client-{os.getpid()}.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            "node",
            "--test",
            "--test-reporter=spec",
            "--test-concurrency=1",
            "--test-timeout=60000",
            *sorted(str(path.relative_to(JS)) for path in (JS / "test").glob("*.test.js")),
            cwd=JS,
            env=env,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await asyncio.wait_for(process.wait(), 160)
        except TimeoutError:
            process.kill()
            await process.wait()
    text = log.read_text(errors="replace")
    print(text)
    assert process.returncode == 0, text
    # The real-server file ran (it skips itself only without this environment).
    assert "connects with a bearer token" in text
