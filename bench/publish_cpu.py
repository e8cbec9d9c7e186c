"""Redis CPU per PUBLISH, by number of subscribers: when does one Redis run out of core?

    .venv/bin/python bench/publish_cpu.py --messages 20000 --subscribers 0,1,2,4,8

Starts a private redis-server, subscribes K connections (redis-cli, which reads as fast as Redis
writes) to one group's channel, as K instances with members in that group would be, publishes N
broadcast-sized messages, and reads Redis' own CPU counters (`INFO cpu`) before and after. Three
ways of publishing: one PUBLISH per round trip from two connections (what instances do:
channels-redis sends one at a time per instance); a frame of a recoverable stream (the stream
log's APPEND script: offset, XADD, expiries and the PUBLISH, one round trip); and pipelined
PUBLISHes (Redis' work alone, without the per-command network cost). Prints microseconds of
Redis CPU per broadcast and a fit a + b*K for each.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from realtime.streams.redis import APPEND  # the script the instances run

CHANNEL = "rpgrt__group__chat.global"
TEXT = '{"type":"chat_message","channel":"global","content":"' + "x" * 120 + '","sender":"player42"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def message() -> bytes:
    """A hub message as the outbound path publishes it: a chat line of about 300 bytes in all."""
    return msgpack.packb(
        {"type": "rt.event", "group": "chat.global", "text": TEXT, "event_type": "chat_message", "sent_at": 1.0}
    )


def cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds Redis has used, user plus system (pub/sub runs on its main thread)."""
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def in_threads(count: int, connections: int, port: int, send: Callable[[redis.Redis], None]) -> None:
    """`count` calls of `send`, one round trip each, spread over `connections` connections."""

    def run(n: int) -> None:
        client = redis.Redis(port=port)
        for _ in range(n):
            send(client)
        client.close()

    threads = [threading.Thread(target=run, args=(count // connections,)) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def publish_round_trips(port: int, count: int) -> None:
    payload = message()
    in_threads(count, 2, port, lambda client: client.publish(CHANNEL, payload))


def append_round_trips(port: int, count: int) -> None:
    keys = ["rpgrt:stream:chat:global", "rpgrt:stream:chat:global:log"]
    args = ["e1", 1000, 300_000, 86_400_000, "chat:global", "chat.global", TEXT, "chat_message", "1.0", "", CHANNEL, ""]
    sha = redis.Redis(port=port).script_load(APPEND)
    in_threads(count, 2, port, lambda client: client.evalsha(sha, len(keys), *keys, *args))


def publish_pipelined(port: int, count: int, batch: int = 200) -> None:
    payload = message()
    client = redis.Redis(port=port)
    for _ in range(count // batch):
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.publish(CHANNEL, payload)
        pipe.execute()
    client.close()


WAYS: dict[str, Callable[[int, int], None]] = {
    "PUBLISH, round trips": publish_round_trips,
    "stream frame (APPEND)": append_round_trips,
    "PUBLISH, pipelined": publish_pipelined,
}


def measure(port: int, subscribers: int, count: int, publish: Callable[[int, int], None]) -> float:
    """Microseconds of Redis CPU per broadcast with K subscribers."""
    listeners = [
        subprocess.Popen(
            ["redis-cli", "-p", str(port), "subscribe", CHANNEL], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(subscribers)
    ]
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while client.pubsub_numsub(CHANNEL)[0][1] < subscribers:
            if time.monotonic() > deadline:
                raise TimeoutError("subscribers did not subscribe")
            time.sleep(0.05)
        before = cpu_seconds(client)
        publish(port, count)
        return (cpu_seconds(client) - before) / count * 1e6
    finally:
        for listener in listeners:
            listener.terminate()
            listener.wait(5)
        client.close()


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares a + b*k."""
    n = len(points)
    mean_k = sum(k for k, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((k - mean_k) ** 2 for k, _ in points)
    slope = sum((k - mean_k) * (y - mean_y) for k, y in points) / spread if spread else 0.0
    return mean_y - slope * mean_k, slope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--subscribers", default="0,1,2,4,8", help="comma separated subscriber counts")
    args = parser.parse_args()
    counts = [int(k) for k in args.subscribers.split(",")]
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rpgrt-bench-redis-")
    server = subprocess.Popen(
        [
            *(shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                version = client.info("server")["redis_version"]
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        print(f"redis {version}, {args.messages} messages of {len(message())} bytes per run; µs of Redis CPU each")
        print("| subscribers | " + " | ".join(WAYS) + " |")
        print("|---" * (len(WAYS) + 1) + "|")
        rows: dict[str, list[tuple[int, float]]] = {way: [] for way in WAYS}
        for k in counts:
            for way, publish in WAYS.items():
                rows[way].append((k, measure(port, k, args.messages, publish)))
            print(f"| {k} | " + " | ".join(f"{rows[way][-1][1]:.2f}" for way in WAYS) + " |")
        for way in WAYS:
            a, b = fit(rows[way])
            print(f"{way}: about {a:.2f} + {b:.2f} * subscribers µs of Redis CPU per broadcast")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(Path(workdir), ignore_errors=True)


if __name__ == "__main__":
    main()
