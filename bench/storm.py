"""The reconnect storm and recovery benchmark (not part of the test suite):

    .venv/bin/python bench/run.py storm --clients 1000 --rate 100 --signal TERM
    .venv/bin/python bench/run.py storm --clients 10000 --rate 10 --signal KILL \\
        --database-url postgres://postgres@127.0.0.1:5432/bench

N players sit in global chat, half on each of two instances; each is a client of the project's
JavaScript library (bench/loadgen/storm.js), so reconnects follow its close-code rules and
backoff with jitter (1 s ceiling on the first retry, as the play page). `--publishers` players,
clients of the project's Python library on the second instance, send numbered chat messages in
turn, `--rate` a second in all.
`--signal-after` seconds in, the first instance is stopped (SIGTERM: close 1001 to everyone) or
killed (SIGKILL: sockets reset); its players reconnect to the survivor and `resume` their
streams. At the end every player must hold every message exactly once and in order.

Reported: time from the signal until every moved player is back and recovered, reconnects/s
during the storm, per-player times from its drop to connected, recovered and first frame, the
survivor's CPU and Redis' CPU and commands during the storm, and the database's transactions
and rows read during it (PostgreSQL). Results go to bench/results/storm-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402 (the path above makes the project importable)
    DEFAULT_DATABASE_URL,
    LOADGEN,
    ensure_loadgen,
    prepare_database,
    setup_info,
    start_servers,
    stop,
    write_result,
)
from rpgrealtime.client import RealtimeClient  # noqa: E402


class LoadSampler(threading.Thread):
    """Every 0.25 s: the survivor's CPU seconds, Redis' CPU seconds and commands, and the
    database's counters, so the storm's window can be cut out afterwards."""

    def __init__(self, server_pid: int, redis_url: str, database_url: str) -> None:
        super().__init__(daemon=True)
        import psutil
        import redis

        self.process = psutil.Process(server_pid)
        self.redis = redis.Redis.from_url(redis_url)
        self.database_url = database_url if database_url.startswith("postgres") else None
        self.samples: list[dict[str, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        database = None
        if self.database_url:
            import psycopg

            database = psycopg.connect(self.database_url, autocommit=True)
        while not self.stopping.is_set():
            sample = {"at": time.time() * 1000}
            times = self.process.cpu_times()
            sample["server_cpu"] = times.user + times.system
            info = self.redis.info()
            sample["redis_cpu"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            sample["redis_commands"] = float(info["total_commands_processed"])
            if database is not None:
                row = database.execute(
                    "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched, "
                    "tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
                sample["db_transactions"], sample["db_rows_read"], sample["db_rows_written"] = map(float, row)
            self.samples.append(sample)
            time.sleep(0.25)
        if database is not None:
            database.close()

    def window(self, start_ms: float, end_ms: float) -> dict[str, Any]:
        """Each counter's growth between the samples around [start, end], and per second."""
        self.stopping.set()
        self.join(5)
        before = [s for s in self.samples if s["at"] <= start_ms] or self.samples[:1]
        after = [s for s in self.samples if s["at"] >= end_ms] or self.samples[-1:]
        first, last = before[-1], after[0]
        seconds = max(0.001, (last["at"] - first["at"]) / 1000)
        out: dict[str, Any] = {"window_seconds": round(seconds, 2)}
        for key in first:
            if key == "at":
                continue
            grown = last[key] - first[key]
            out[key] = round(grown, 2)
            out[f"{key}_per_second"] = round(grown / seconds, 1)
        return out


class Publisher:
    """Numbered global chat messages of one player through the Python client, each acknowledged."""

    def __init__(self, index: int, url: str, token: str) -> None:
        self.index = index
        self.client = RealtimeClient(f"{url}/ws/chat", token=token)
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.acknowledged = 0
        self.closes: list[str] = []
        self.client.on("close", lambda event: self.closes.append(f"{event.code} {event.error}"))

    async def send(self) -> None:
        number, self.sent = self.sent, self.sent + 1
        content = f"{self.index}|{number}|{time.time() * 1000:.1f}"
        try:
            await self.client.request({"type": "chat_message", "channel": "global", "content": content}, timeout=30)
            self.acknowledged += 1
        except Exception as exc:
            self.errors[getattr(exc, "code", type(exc).__name__)] += 1


async def publish_and_signal(args, publishers: list[Publisher], victim, tell) -> dict[str, Any]:
    """`--rate` messages a second in all, from the publishers in turn (a crowd chatting, not one
    connection sending 100 a second: a connection's frames are handled one after the other)."""
    for publisher in publishers:
        await publisher.client.connect()
    total = round(args.rate * args.duration)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sends: list[asyncio.Task[None]] = []
    signalled_at = None
    for number in range(total):
        wait = start + number / args.rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if signalled_at is None and loop.time() - start >= args.signal_after:
            victim.process.send_signal(signal.SIGTERM if args.signal == "TERM" else signal.SIGKILL)
            signalled_at = time.time() * 1000
            tell(f"SIGNALLED {signalled_at}")
        sends.append(asyncio.create_task(publishers[number % len(publishers)].send()))
    await asyncio.gather(*sends)
    for publisher in publishers:
        await publisher.client.close()
    return {"scheduled": total, "signalled_at": signalled_at, "send_seconds": round(loop.time() - start, 2)}


def cmd_storm(args) -> dict[str, Any]:
    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.clients + args.publishers)
    redis, servers = start_servers(args, args.database_url)
    victim, survivor = servers[0], servers[1]
    config = {
        "workload": "storm",
        "path": "/ws/chat",
        "urls": [victim.ws, survivor.ws],
        "tokens": tokens[args.publishers :],
        "publishers": args.publishers,
        "procs": args.procs,
        "connect_concurrency": args.connect_concurrency,
        "backoff_initial_ms": args.backoff_initial * 1000,
        "connect_timeout_ms": 15000,
        "settle_seconds": args.settle,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    loadgen = subprocess.Popen(
        ["node", str(LOADGEN / "storm.js"), handle.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = threading.Event()

    def pump() -> None:
        for line in loadgen.stderr:
            if line.startswith("READY"):
                ready.set()
            sys.stderr.write(line)

    threading.Thread(target=pump, daemon=True).start()

    def tell(line: str) -> None:
        loadgen.stdin.write(line + "\n")
        loadgen.stdin.flush()

    try:
        if not ready.wait(600):
            raise RuntimeError("the players did not connect")
        time.sleep(2.0)  # let the connect burst's housekeeping settle
        sampler = LoadSampler(survivor.process.pid, redis.url, args.database_url)
        sampler.start()
        publishers = [Publisher(n, survivor.ws, tokens[n]) for n in range(args.publishers)]
        published = asyncio.run(publish_and_signal(args, publishers, victim, tell))
        tell("FINISH " + ",".join(str(p.acknowledged) for p in publishers))
        out = loadgen.stdout.read()
        loadgen.wait(120)
        result = json.loads(out.strip().splitlines()[-1])
        result.update(published)
        result["publisher_acknowledged"] = sum(p.acknowledged for p in publishers)
        result["publisher_errors"] = dict(sum((p.errors for p in publishers), Counter()))
        result["publisher_closes"] = [close for p in publishers for close in p.closes]
        if published["signalled_at"] is not None:  # --signal-after past the end: a run without a storm
            back = result["all_back_and_recovered_seconds"] or args.duration
            storm_end = published["signalled_at"] + 1000 * back
            result["during_the_storm"] = sampler.window(published["signalled_at"], storm_end)
        result["rate"] = args.rate
        result["signal"] = f"SIG{args.signal}"
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
        Path(handle.name).unlink(missing_ok=True)
        stop(redis, servers)
    result.update(setup_info(args))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="chat messages per second, from all publishers")
    parser.add_argument("--publishers", type=int, default=10, help="players publishing, in turn")
    parser.add_argument("--duration", type=float, default=30, help="seconds of publishing")
    parser.add_argument("--signal-after", type=float, default=10, help="seconds into publishing")
    parser.add_argument("--signal", choices=["TERM", "KILL"], default="TERM")
    parser.add_argument("--backoff-initial", type=float, default=1.0, help="seconds: the first retry's ceiling")
    parser.add_argument("--connect-concurrency", type=int, default=100, help="per load generator process")
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--settle", type=float, default=30, help="seconds to wait for the last frames")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    args.instances, args.peer, args.server = 2, None, "daphne"
    result = cmd_storm(args)
    path = write_result("storm", result)
    print(json.dumps(result, indent=2, default=str))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
