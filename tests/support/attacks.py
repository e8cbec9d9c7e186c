"""Abusive clients, for the hardening tests and the burst benchmark (bench/burst.py).

`history_burst` is the attack of the hardening review: many authenticated /ws/chat connections
each sending expensive `history_request` frames padded to ~60 kB as fast as the socket takes
them, while reading whatever comes back. `Victim` is a well-behaved player on the same instance
whose request latency is measured meanwhile, in a process of its own (`python -m
tests.support.attacks victim URL TOKEN`), so the attackers' own work does not slow its clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import websockets

# The limits of docs/operations.md, spelled out: the usual test cluster lifts them, and the burst
# benchmark runs older revisions with the same values.
DEFAULT_LIMITS = {
    "WEBSOCKET_RATE_LIMIT": "20/40",
    "CHAT_RATE_LIMIT": "20",
    "WEBSOCKET_MAX_MESSAGE_BYTES": "65536",
    "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "20",
    "WEBSOCKET_MAX_CONNECTIONS_PER_IP": "0",
    "WEBSOCKET_MAX_ANONYMOUS_PER_IP": "50",
    "WEBSOCKET_MAX_QUEUED_FRAMES": "64",
    "WEBSOCKET_MAX_QUEUED_BYTES": "262144",
    "COMBAT_START_RATE_LIMIT": "10",
    "WORLD_MOVE_RATE_LIMIT": "25",
}
# What the image and scripts/serve let daphne accept: bigger frames are refused by the transport.
DAPHNE_LIMITS = ["--websocket-max-message-size", "1048576", "--websocket-max-frame-size", "1048576"]


@dataclass
class BurstResult:
    frames_sent: int = 0
    replies: Counter = field(default_factory=Counter)  # "history", "error:rate_limited", ...
    closes: Counter = field(default_factory=Counter)  # close code (None: dropped without one)
    seconds: float = 0.0


def padded_history_request(frame_bytes: int, n: int) -> str:
    frame = {"type": "history_request", "channel": "global", "limit": 100, "id": n, "pad": ""}
    frame["pad"] = "x" * max(0, frame_bytes - len(json.dumps(frame)))
    return json.dumps(frame)


async def _attacker(url: str, token: str, frames: int, frame_bytes: int, result: BurstResult) -> None:
    try:
        connection = await websockets.connect(
            url, subprotocols=["bearer", token], max_size=None, open_timeout=30, ping_interval=None
        )
    except Exception:
        result.closes["refused"] += 1
        return

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in connection:
                frame = json.loads(message)
                key = frame["type"] if frame["type"] != "error" else f"error:{frame['code']}"
                result.replies[key] += 1

    reader = asyncio.ensure_future(read())
    payloads = [padded_history_request(frame_bytes, n) for n in range(frames)]
    with contextlib.suppress(websockets.ConnectionClosed):
        for payload in payloads:
            await connection.send(payload)
            result.frames_sent += 1
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), 10)
    await connection.close()
    with contextlib.suppress(Exception):
        await reader
    result.closes[connection.close_code] += 1


async def history_burst(
    ws_url: str, tokens: list[str], *, connections_per_user: int, frames: int, frame_bytes: int
) -> BurstResult:
    """Every token opens `connections_per_user` /ws/chat connections; each sends `frames`
    padded `history_request`s at once. Returns what came back."""
    result = BurstResult()
    started = time.monotonic()
    url = f"{ws_url}/ws/chat"
    await asyncio.gather(
        *(_attacker(url, token, frames, frame_bytes, result) for token in tokens for _ in range(connections_per_user))
    )
    result.seconds = time.monotonic() - started
    return result


class Victim:
    """A player asking for history every `every` seconds, in its own process; keeps the slowest
    answer and any failure."""

    def __init__(self, ws_url: str, token: str, every: float = 0.1) -> None:
        self.command = [sys.executable, "-m", "tests.support.attacks", "victim", f"{ws_url}/ws/chat", token, str(every)]
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Victim:
        self._process = await asyncio.create_subprocess_exec(
            *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), 30)  # connected
        if ready.strip() != b"ready":
            raise RuntimeError(f"the victim did not connect: {ready!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._process is not None
        output, _ = await asyncio.wait_for(self._process.communicate(b"stop\n"), 30)
        report = json.loads(output.decode().strip().splitlines()[-1])
        self.latencies, self.failures = report["latencies"], report["failures"]

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=0.0)


async def _victim(url: str, token: str, every: float) -> None:
    """The victim's process: requests until told to stop on stdin, then prints its report."""
    latencies: list[float] = []
    failures: list[str] = []
    connection = await websockets.connect(url, subprotocols=["bearer", token], open_timeout=30)
    json.loads(await connection.recv())  # connection_established
    print("ready", flush=True)
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    n = 0
    while not stop.done():
        n += 1
        sent = time.monotonic()
        await connection.send(json.dumps({"type": "history_request", "channel": "global", "id": n}))
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(connection.recv(), 10))
            except TimeoutError:
                failures.append(f"no answer to request {n} within 10 s")
                latencies.append(10.0)
                break
            if frame.get("id") == n:
                latencies.append(time.monotonic() - sent)
                if frame["type"] != "history":
                    failures.append(f"request {n}: {frame}")
                break
        await asyncio.sleep(every)
    await connection.close()
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["victim"]:
        asyncio.run(_victim(sys.argv[2], sys.argv[3], float(sys.argv[4])))
