"""How many idle players one instance holds, and what holding them costs (not part of the tests):

    .venv/bin/python bench/run.py capacity --connections 19000 \\
        --database-url postgres://postgres@127.0.0.1:5432/bench

One daphne instance with production settings (heartbeats every 30 s, as shipped), a private
Redis, N authenticated players in global chat opened by two load-generator processes (each
process may hold at most as many sockets as its open-file limit), then held idle. Reported: RSS
per connection, the instance's CPU while everyone idles (heartbeats, housekeeping, pongs), and
how long each housekeeping job's pass takes at that size (from `rpgrealtime_housekeeping_seconds`
on `/metrics`). Results go to bench/results/capacity-*.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402 (the path above makes the project importable)
    DEFAULT_DATABASE_URL,
    LOADGEN,
    SERVER_ENV,
    ensure_loadgen,
    prepare_database,
    setup_info,
    stop,
    write_result,
)

HISTOGRAM_LINE = re.compile(r'^rpgrealtime_housekeeping_seconds_(sum|count)\{job="([^"]+)"\} ([0-9.e+-]+)$')


def housekeeping(http: str) -> dict[str, dict[str, float]]:
    """Sum and count of each job's run times so far."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    jobs: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = HISTOGRAM_LINE.match(line)
        if match:
            jobs.setdefault(match[2], {})[match[1]] = float(match[3])
    return jobs


def job_means(before: dict, after: dict) -> dict[str, Any]:
    out = {}
    for job, now in after.items():
        runs = now.get("count", 0) - before.get(job, {}).get("count", 0)
        if runs:
            seconds = now.get("sum", 0) - before.get(job, {}).get("sum", 0)
            out[job] = {"runs": int(runs), "mean_ms": round(1000 * seconds / runs, 2)}
    return out


def start_loadgen(tokens: list[str], url: str, hold: float, holding: threading.Event, lines: list[str]):
    config = {
        "workload": "connect",
        "protocol": "rpgrealtime",
        "path": "/ws/chat",
        "urls": [url],
        "tokens": tokens,
        "connections": len(tokens),
        "concurrency": 100,
        "hold_seconds": hold,
        "client": "raw",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    process = subprocess.Popen(
        ["node", str(LOADGEN / "loadgen.js"), handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def pump() -> None:
        for line in process.stderr:
            lines.append(line.strip())
            if line.startswith("HOLDING"):
                holding.set()

    threading.Thread(target=pump, daemon=True).start()
    return process, Path(handle.name)


def cmd_capacity(args) -> dict[str, Any]:
    import psutil

    from tests.support.cluster import RedisServer, ServerProcess

    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.connections)
    redis = RedisServer().start()
    env = {
        **SERVER_ENV,
        "DATABASE_URL": args.database_url,
        "WEBSOCKET_CLEANUP_INTERVAL": str(args.cleanup_interval),
        "WEBSOCKET_RATE_LIMIT": "0",
    }
    server = ServerProcess("capacity", redis=redis, base_env={}, env=env, daphne_args=["-v", "0"]).start()
    process = psutil.Process(server.process.pid)
    print(f"server pid: {server.process.pid}", file=sys.stderr, flush=True)
    loadgens = []
    try:
        time.sleep(2.0)
        rss_before = process.memory_info().rss
        halves = [tokens[0::2], tokens[1::2]]
        events = [threading.Event() for _ in halves]
        lines: list[str] = []
        started = time.monotonic()
        for half, event in zip(halves, events, strict=True):
            loadgens.append(start_loadgen(half, server.ws, args.hold + 60, event, lines))
        for event in events:
            if not event.wait(900):
                raise RuntimeError(f"the players did not connect: {lines[-5:]}")
        connect_seconds = time.monotonic() - started
        time.sleep(5.0)  # the connect burst's flushes and subscriptions settle
        held = sum(int(line.split()[1]) for line in lines if line.startswith("HOLDING"))
        rss_held = process.memory_info().rss
        cpu0, jobs0, t0 = sum(process.cpu_times()[:2]), housekeeping(server.http), time.monotonic()
        time.sleep(args.hold)
        cpu1, jobs1, t1 = sum(process.cpu_times()[:2]), housekeeping(server.http), time.monotonic()
        open_files = process.num_fds()
        result = {
            "workload": "capacity",
            "connections": held,
            "connect_seconds": round(connect_seconds, 1),
            "rss_before_mb": round(rss_before / 2**20, 1),
            "rss_held_mb": round(rss_held / 2**20, 1),
            "kib_per_connection": round((rss_held - rss_before) / 1024 / max(1, held), 1),
            "idle_seconds": round(t1 - t0, 1),
            "idle_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "housekeeping": job_means(jobs0, jobs1),
            "open_files": open_files,
            "heartbeat_interval": 30,
            "cleanup_interval": args.cleanup_interval,
        }
    finally:
        for loadgen, path in loadgens:
            loadgen.kill()
            path.unlink(missing_ok=True)
        args.instances, args.peer = 1, None
        stop(redis, [server])
    result.update(setup_info(args))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=19000)
    parser.add_argument("--hold", type=float, default=90, help="seconds of idling measured")
    parser.add_argument("--cleanup-interval", type=float, default=30, help="WEBSOCKET_CLEANUP_INTERVAL")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    args.instances, args.peer, args.server = 1, None, "daphne"
    result = cmd_capacity(args)
    path = write_result("capacity", result)
    print(json.dumps(result, indent=2, default=str))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
