"""A burst of expensive frames against one instance with the default limits (not part of the tests):

    .venv/bin/python bench/run.py burst                                 # this checkout
    .venv/bin/python bench/run.py burst --source ../rpgrealtime-before  # another revision, same run

The attack of the hardening review (tests/support/attacks.py): 3 accounts × 20 /ws/chat
connections, each sending 100 `history_request` frames padded to 60 kB as fast as the socket
takes them. Meanwhile another player asks for history every 100 ms (its own process, so the
attackers' work does not slow its clock) and a third process opens a fresh connection every
200 ms. Reported: what the attackers got back (answers, `rate_limited`, close codes), the
instance's memory before, at its peak and 5 s after, the other player's request latency and the
connect latency during the burst. `--source DIR` runs the server from another checkout (its own
settings, migrations and code), so a revision before the limits can be measured next to this
one. Results go to bench/results/burst-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import SECRET, machine, write_result  # noqa: E402 (the path above makes the project importable)
from tests.support.attacks import DAPHNE_LIMITS, DEFAULT_LIMITS, Victim, history_burst  # noqa: E402

MiB = 1024 * 1024


def server_env(database_url: str, source: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base",
        "DEBUG": "false",
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "JWT_ACCESS_TOKEN_LIFETIME": "7200",
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(source),  # never this checkout's code when measuring another
        **DEFAULT_LIMITS,
    }


def prepare(source: Path, env: dict[str, str], accounts: int) -> list[str]:
    """Migrate a fresh database with `source`'s own migrations; `accounts` players, a token each."""
    full = {**os.environ, **env, "REDIS_URL": ""}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=source, env=full, check=True)
    script = (
        "import json; from django.contrib.auth import get_user_model; "
        "from rest_framework_simplejwt.tokens import AccessToken; U = get_user_model(); "
        f"print(json.dumps([str(AccessToken.for_user(U.objects.create_user(username=f'burst{{i}}'))) "
        f"for i in range({accounts})]))"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=source,
        env=full,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class PeakMemory(threading.Thread):
    """Samples a process's RSS every 100 ms; keeps the highest."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.1)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


async def probe_connects(url: str, token: str, every: float) -> None:
    """The connect prober's process: a fresh connection until told to stop on stdin."""
    import websockets

    latencies: list[float] = []
    failures: list[str] = []
    print("ready", flush=True)
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    while not stop.done():
        started = time.monotonic()
        try:
            async with websockets.connect(url, subprotocols=["bearer", token], open_timeout=30) as connection:
                frame = json.loads(await asyncio.wait_for(connection.recv(), 30))
                if frame.get("type") != "connection_established":
                    failures.append(str(frame)[:200])
            latencies.append(time.monotonic() - started)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append(time.monotonic() - started)
        await asyncio.sleep(every)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


class ConnectProber:
    def __init__(self, ws_url: str, token: str, every: float = 0.2) -> None:
        self.command = [sys.executable, __file__, "--probe-connects", f"{ws_url}/ws/game", token, str(every)]
        self.latencies: list[float] = []
        self.failures: list[str] = []

    async def __aenter__(self) -> ConnectProber:
        self._process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self._process.stdout is not None
        await asyncio.wait_for(self._process.stdout.readline(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        output, _ = await asyncio.wait_for(self._process.communicate(b"stop\n"), 60)
        report = json.loads(output.decode().strip().splitlines()[-1])
        self.latencies, self.failures = report["latencies"], report["failures"]


async def attack(ws_url: str, tokens: list[str], args) -> dict[str, Any]:
    attackers, victim_token, prober_token = tokens[:-2], tokens[-2], tokens[-1]
    # Quiet before: the baseline the answers and connects of the burst are compared with.
    async with Victim(ws_url, victim_token) as quiet, ConnectProber(ws_url, prober_token) as quiet_connects:
        await asyncio.sleep(args.quiet)
    async with Victim(ws_url, victim_token) as victim, ConnectProber(ws_url, prober_token) as connects:
        result = await history_burst(
            ws_url,
            attackers,
            connections_per_user=args.per_account,
            frames=args.frames,
            frame_bytes=args.frame_bytes,
        )
        await asyncio.sleep(1.0)
    return {
        "frames_sent": result.frames_sent,
        "burst_seconds": round(result.seconds, 1),
        "replies": dict(result.replies),
        "closes": {str(code): count for code, count in result.closes.items()},
        "other_player_quiet": percentiles(quiet.latencies),
        "other_player_during_burst": percentiles(victim.latencies),
        "other_player_failures": victim.failures[:5],
        "connect_quiet": percentiles(quiet_connects.latencies),
        "connect_during_burst": percentiles(connects.latencies),
        "connect_failures": connects.failures[:5],
    }


def run(args) -> dict[str, Any]:
    from tests.support.cluster import RedisServer, ServerProcess

    source = Path(args.source).resolve()
    database = Path(tempfile.gettempdir()) / f"rpgrealtime-burst-{os.getpid()}.sqlite3"
    env = server_env(f"sqlite:///{database}", source)
    tokens = prepare(source, env, args.accounts + 2)
    revision = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], check=False, cwd=source, capture_output=True, text=True
    ).stdout.strip()
    redis = RedisServer().start()
    server = ServerProcess(
        "burst", redis=redis, base_env={}, env=env, daphne_args=[*DAPHNE_LIMITS, "-v", "0"], source=source
    ).start()
    peak = PeakMemory(server.process.pid)
    try:
        time.sleep(2.0)
        before = peak.process.memory_info().rss
        peak.peak = before
        peak.start()
        outcome = asyncio.run(attack(server.ws, tokens, args))
        time.sleep(5.0)
        after = peak.process.memory_info().rss
    finally:
        peak.running = False
        server.terminate(15)
        redis.stop()
        database.unlink(missing_ok=True)
    refused = outcome["replies"].get("error:rate_limited", 0)
    return {
        "workload": "burst",
        "revision": revision,
        "attack": f"{args.accounts} accounts × {args.per_account} /ws/chat connections × {args.frames} "
        f"history_request of {args.frame_bytes} bytes",
        **outcome,
        "rate_limited_replies": refused,
        "rss_before_mb": round(before / MiB, 1),
        "rss_peak_mb": round(peak.peak / MiB, 1),
        "rss_after_mb": round(after / MiB, 1),
        "grown_at_peak_mb": round((peak.peak - before) / MiB, 1),
        "grown_after_mb": round((after - before) / MiB, 1),
        "limits": DEFAULT_LIMITS,
        "database": "sqlite",
        "machine": machine(),
    }


def main() -> None:
    if sys.argv[1:2] == ["--probe-connects"]:
        asyncio.run(probe_connects(sys.argv[2], sys.argv[3], float(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ROOT), help="the checkout to run the server from")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--per-account", type=int, default=20, help="connections per account")
    parser.add_argument("--frames", type=int, default=100, help="frames per connection")
    parser.add_argument("--frame-bytes", type=int, default=60_000)
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds measured before the burst")
    parser.add_argument("--label", default="", help="appended to the result's name, e.g. before")
    args = parser.parse_args()
    os.chdir(ROOT)  # the victim's process imports tests.support.attacks from here
    result = run(args)
    path = write_result(f"burst-{args.label}" if args.label else "burst", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2, default=str))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
