"""A bounded soak of rpgrealtime (not part of the test suite): a few thousand connections on two
instances for some minutes, each playing a part — chat (party, private, a few global chatters,
typing), world movement, combat, game status and pings — then reports memory per instance
(RSS at start, middle and end), errors, unexpected closes, and whether anything was lost:
every private message must reach its recipient; party and global chat are counted per receiver.

    .venv/bin/python bench/soak.py --connections 2000 --minutes 3

It reuses bench/run.py's setup (scratch database, users and JWTs, private Redis, production
settings) and drives the servers with bench/loadgen/soak.js. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import (
    LOADGEN,
    SERVER_ENV,
    Sampler,
    ensure_loadgen,
    machine,
    prepare_database,
    stop,
    write_result,
)

# Share of connections per endpoint; the rest are /ws/game.
SHARES = {"chat": 0.40, "world": 0.30, "combat": 0.10}
PARTY_SIZE = 5
ZONES = [("starter_town", 1000), ("dark_forest", 2000)]


def assign(accounts: list[Any], tokens: list[str], urls: list[str], global_every: int) -> list[dict[str, Any]]:
    """One connection per user: its endpoint, instance, and for chat its party and partner."""
    total = len(accounts)
    counts = {endpoint: int(total * share) for endpoint, share in SHARES.items()}
    endpoints = ["chat"] * counts["chat"] + ["world"] * counts["world"] + ["combat"] * counts["combat"]
    endpoints += ["game"] * (total - len(endpoints))
    chat = [i for i, endpoint in enumerate(endpoints) if endpoint == "chat"]
    players = []
    for i, (user, token, endpoint) in enumerate(zip(accounts, tokens, endpoints, strict=True)):
        spec: dict[str, Any] = {
            "endpoint": endpoint,
            "url": urls[i % len(urls)],
            "token": token,
            "user_id": str(user.pk),
        }
        if endpoint == "chat":
            position = chat.index(i)
            members = chat[position - position % PARTY_SIZE : position - position % PARTY_SIZE + PARTY_SIZE]
            spec["party_size"] = len(members)
            # The partner is the next chatter, which sits on the other instance.
            spec["partner_id"] = str(accounts[chat[(position + 1) % len(chat)]].pk)
            spec["global_chatter"] = position % global_every == 0
        elif endpoint == "world":
            spec["zone"] = ZONES[i % len(ZONES)]
        players.append(spec)
    return players


def make_parties(accounts: list[Any], players: list[dict[str, Any]]) -> None:
    from accounts.models import Party, User

    chatters = [user for user, spec in zip(accounts, players, strict=True) if spec["endpoint"] == "chat"]
    parties = [Party(name=f"soak-party-{n}") for n in range(0, len(chatters), PARTY_SIZE)]
    Party.objects.bulk_create(parties)
    for n, user in enumerate(chatters):
        user.party = parties[n // PARTY_SIZE]
    User.objects.bulk_update(chatters, ["party"], batch_size=1000)


def run_soak_js(config: dict[str, Any], on_line: Callable[[str], None], timeout: float) -> dict[str, Any]:
    """Run bench/loadgen/soak.js with `config`; its stderr lines go to `on_line`."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    process = subprocess.Popen(
        ["node", str(LOADGEN / "soak.js"), handle.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    reader = threading.Thread(target=lambda: [on_line(line.rstrip()) for line in process.stderr], daemon=True)
    reader.start()
    try:
        out = process.stdout.read()  # not communicate(): it would read stderr too, past the reader
        process.wait(timeout)
    finally:
        os.unlink(handle.name)
    reader.join(10)
    if process.returncode != 0:
        raise RuntimeError(f"soak load generator failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def start_servers(instances: int, database_url: str):
    from tests.support.cluster import RedisServer, ServerProcess

    env = {
        **SERVER_ENV,
        "DATABASE_URL": database_url,
        "WORLD_MAX_STEP": "3000",  # players leave the spawn point in one jump, then walk
        "WORLD_MOVE_RATE_LIMIT": "0",
        "COMBAT_TURN_TIMEOUT": "10",
        "WEBSOCKET_SEND_BUFFER_BYTES": str(1 << 20),  # the production default
    }
    redis = RedisServer().start()
    servers = [
        ServerProcess(f"soak{i}", redis=redis, base_env={}, env=env, daphne_args=["-v", "0"]).start()
        for i in range(instances)
    ]
    return redis, servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--database-url", default="sqlite:////tmp/rpgrealtime-soak.sqlite3")
    parser.add_argument("--party-interval", type=float, default=10.0, help="seconds between a chatter's party messages")
    parser.add_argument("--private-interval", type=float, default=15.0)
    parser.add_argument("--global-interval", type=float, default=20.0)
    parser.add_argument("--global-every", type=int, default=50, help="every Nth chatter also chats globally")
    parser.add_argument("--move-interval", type=float, default=1.0, help="seconds between a player's moves")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait for the last deliveries")
    args = parser.parse_args()
    if not shutil.which("node"):
        raise SystemExit("the load generator needs Node.js (node) on PATH")
    ensure_loadgen()

    tokens, accounts = prepare_database(args.database_url, args.connections)
    redis, servers = start_servers(args.instances, args.database_url)
    players = assign(accounts, tokens, [s.ws for s in servers], args.global_every)
    make_parties(accounts, players)
    pids = {s.instance_id: s.process.pid for s in servers}
    sampler = Sampler(list(pids.values()))
    memory: dict[str, dict[str, float]] = {}

    def on_line(line: str) -> None:
        print(line, file=sys.stderr, flush=True)
        if line.startswith("PHASE"):
            phase = line.split()[1]
            if phase == "started":
                time.sleep(2.0)  # let the connection burst settle
            rss = sampler.rss()
            memory[phase] = {name: round(rss[pid] / 2**20, 1) for name, pid in pids.items()}

    config = {
        "players": players,
        "concurrency": 50,
        "duration": args.minutes * 60,
        "drain": args.drain,
        "ping_interval": 20,
        "status_interval": 30,
        "party_interval": args.party_interval,
        "private_interval": args.private_interval,
        "global_interval": args.global_interval,
        "move_interval": args.move_interval,
        "combat_think_ms": 800,
        "chat_connections": sum(1 for p in players if p["endpoint"] == "chat"),
    }
    timeline: list[dict[str, float]] = []
    done = threading.Event()

    def sample_every(seconds: float) -> None:
        started = time.monotonic()
        while not done.wait(seconds):
            rss = sampler.rss()
            timeline.append(
                {"t": round(time.monotonic() - started), **{n: round(rss[pid] / 2**20, 1) for n, pid in pids.items()}}
            )

    sampler.start()
    threading.Thread(target=sample_every, args=(15.0,), daemon=True).start()
    try:
        result = run_soak_js(config, on_line, timeout=args.minutes * 60 + 900)
        done.set()
        result.update(sampler.finish())
        result["memory_timeline_mb"] = timeline
        metrics = {s.instance_id: s.request("GET", "/metrics")[1] for s in servers}
    finally:
        stop(redis, servers)
    result["memory_mb"] = memory
    result["memory_growth_mb"] = {
        name: round(memory["ended"][name] - memory["started"][name], 1) for name in pids if "ended" in memory
    }
    result["server_errors"] = {name: scrape_errors(text) for name, text in metrics.items()}
    result.update(
        {
            "workload": "soak",
            "minutes": args.minutes,
            "instances": args.instances,
            "mix": {endpoint: sum(1 for p in players if p["endpoint"] == endpoint) for endpoint in (*SHARES, "game")},
            "database": args.database_url.split(":", 1)[0],
            "machine": machine(),
        }
    )
    path = write_result("soak", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("lost_private",)}, indent=2, default=str))
    print(f"written: {path}")


COUNTED = (
    "rpgrealtime_ws_errors_total{",
    "rpgrealtime_ws_closes_total{",
    "rpgrealtime_ws_slow_consumers_total",
    "rpgrealtime_ws_broadcast_failures_total",
)
LATENCY = "rpgrealtime_ws_broadcast_latency_seconds_bucket{"


def scrape_errors(exposition: Any) -> dict[str, float]:
    """What the server counted (Prometheus text): error frames, closes, slow consumers, broadcasts
    the layer did not confirm in time, and the share of broadcasts handed to sockets within
    0.1 s, 1 s and 5 s of their publication."""
    found: dict[str, float] = {}
    if not isinstance(exposition, str):
        return found
    buckets: dict[str, float] = {}
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if line.startswith(COUNTED) and float(value):
            found[name] = float(value)
        elif line.startswith(LATENCY):
            buckets[name.split('le="')[1].rstrip('"}')] = float(value)
    total = buckets.get("+Inf")
    if total:
        for bound in ("0.1", "1.0", "5.0"):
            found[f"broadcasts within {bound} s (%)"] = round(100 * buckets.get(bound, 0) / total, 2)
    return found


if __name__ == "__main__":
    main()
