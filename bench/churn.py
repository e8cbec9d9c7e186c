"""Memory of one instance under connection churn (not part of the tests):

    .venv/bin/python bench/run.py churn --rounds 6 --connections 5000
    GC_THRESHOLD=python .venv/bin/python bench/run.py churn      # Python's own collector, to compare

Round after round, N players connect to one instance (production settings, a private Redis),
hold for a moment and all disconnect. Reported: the instance's RSS after each round once
everyone has gone, and the garbage collector's thresholds it ran with (from `/metrics`). A
server that keeps something per closed connection, or a collector that never reclaims the cycles
a connection leaves behind, grows round after round; a healthy one levels off after the first
rounds (the allocator keeps what it was given). Results go to bench/results/churn-*.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402 (the path above makes the project importable)
    DEFAULT_DATABASE_URL,
    SERVER_ENV,
    ensure_loadgen,
    machine,
    prepare_database,
    run_loadgen,
    write_result,
)

MiB = 2**20


def gc_settings(http: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = r'^rpgrealtime_gc_threshold\{generation="(\d)"\} (\S+)$'
    found = {f"threshold_{m[1]}": float(m[2]) for m in re.finditer(pattern, text, re.M)}
    frozen = re.search(r"^rpgrealtime_gc_frozen_objects (\S+)$", text, re.M)
    if frozen:
        found["frozen_objects"] = float(frozen[1])
    return found


def run(args) -> dict[str, Any]:
    import psutil

    from tests.support.cluster import RedisServer, ServerProcess

    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.connections)
    redis = RedisServer().start()
    env = {**SERVER_ENV, "DATABASE_URL": args.database_url}
    server = ServerProcess("churn", redis=redis, base_env={}, env=env, daphne_args=["-v", "0"]).start()
    process = psutil.Process(server.process.pid)
    rounds = []
    try:
        time.sleep(2.0)
        start_rss = process.memory_info().rss
        for n in range(args.rounds):
            config = {
                "workload": "connect",
                "protocol": "rpgrealtime",
                "path": "/ws/chat",
                "urls": [server.ws],
                "tokens": tokens,
                "connections": args.connections,
                "concurrency": 100,
                "hold_seconds": 2,
                "client": "raw",
            }
            result = run_loadgen(config, on_stderr_line=lambda line: None)
            time.sleep(args.settle)  # closes handled, registry flushed
            rss = process.memory_info().rss
            rounds.append(
                {
                    "round": n + 1,
                    "connected": result["connections"],
                    "connects_per_second": result["connects_per_second"],
                    "rss_after_mb": round(rss / MiB, 1),
                }
            )
            print(json.dumps(rounds[-1]), flush=True)
        collector = gc_settings(server.http)
    finally:
        server.terminate(15)
        redis.stop()
    growth = [r["rss_after_mb"] for r in rounds]
    return {
        "workload": "churn",
        "connections_per_round": args.connections,
        "rss_start_mb": round(start_rss / MiB, 1),
        "rounds": rounds,
        "rss_growth_first_to_last_round_mb": round(growth[-1] - growth[0], 1),
        "rss_growth_second_half_mb": round(growth[-1] - growth[len(growth) // 2], 1),
        "gc": collector,
        "database": args.database_url.split(":", 1)[0],
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after each round before measuring")
    parser.add_argument("--label", default="")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args()
    result = run(args)
    path = write_result(f"churn-{args.label}" if args.label else "churn", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "rounds")}, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
