"""Movement benchmark: does a move's cost depend on who is near, or on how many are in the zone?

N "near" players walk at --rate Hz inside one small cluster (everyone hears everyone), while
"far" players are added elsewhere in the SAME zone, step by step (--far 0,500,1500). With area
of interest working, the frames each near client receives and the server CPU per move stay flat
as far players are added. One command starts everything (a private redis-server, one or two
daphne instances on a scratch SQLite database, load-generator processes), and writes
bench/results/movement-<time>.json and .md:

    python bench/movement.py --instances 2 --near 50 --far 0,500,1500 --rate 10 --seconds 10

Not part of the test suite. The load generator is several processes of plain asyncio
`websockets` clients that count frames by type without parsing them; its own CPU is reported,
since on a small machine it competes with the servers for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import RedisServer, free_port, wait_for_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ZONE = "bench_field"
ZONE_SIZE = 5000.0
SPAWN = (4900.0, 4900.0)  # a corner away from everyone: players pass through it once
CLUSTER_CENTRE = (300.0, 300.0)
CLUSTER_RADIUS = 40.0  # every near player within 80 of every other: all hear all (radius 100)
FAR_SPACING = 110.0  # far players out of each other's radius
FAR_CLEARANCE = 400.0  # and far from the cluster


# --- placement -----------------------------------------------------------------------------


def near_spot(rng: random.Random) -> tuple[float, float]:
    angle, distance = rng.uniform(0, 2 * math.pi), CLUSTER_RADIUS * math.sqrt(rng.random())
    return CLUSTER_CENTRE[0] + distance * math.cos(angle), CLUSTER_CENTRE[1] + distance * math.sin(angle)


def far_spots(count: int) -> list[tuple[float, float]]:
    spots = []
    steps = int(ZONE_SIZE // FAR_SPACING)
    for i in range(steps):
        for j in range(steps):
            x, y = 55 + i * FAR_SPACING, 55 + j * FAR_SPACING
            if math.dist((x, y), CLUSTER_CENTRE) < FAR_CLEARANCE or math.dist((x, y), SPAWN) < 200:
                continue
            spots.append((x, y))
    if len(spots) < count:
        raise SystemExit(f"at most {len(spots)} far players fit in the zone")
    random.Random(3).shuffle(spots)
    return spots[:count]


# --- load generator (worker processes) -------------------------------------------------------


@dataclass
class Counters:
    moves: int = 0
    frames: dict[str, dict[str, int]] = field(default_factory=lambda: {"near": {}, "far": {}})
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def snapshot(self) -> dict[str, Any]:
        """The counts since the last snapshot; clears them in place (clients hold references)."""
        data = {
            "moves": self.moves,
            "frames": {kind: dict(counts) for kind, counts in self.frames.items()},
            "latencies": list(self.latencies),
            "errors": self.errors,
        }
        self.moves = self.errors = 0
        for counts in self.frames.values():
            counts.clear()
        self.latencies.clear()
        return data


LATENCY_SAMPLE = 20  # parse the timestamp of one player_movement frame in this many


@dataclass(frozen=True)
class ClientSpec:
    url: str
    token: str
    spot: tuple[float, float]
    moving: bool
    rate: float
    kind: str  # "near" or "far"
    seed: int


async def run_client(
    spec: ClientSpec, counters: Counters, placed: asyncio.Semaphore, go: asyncio.Event, stop: asyncio.Event
) -> None:
    """One player: connect, enter the zone, jump to its spot (then `placed` is released), and
    move at its rate until `stop`, counting what it receives."""
    try:
        ws = await place(spec)
    except Exception as exc:
        counters.errors += 1
        print(f"client failed to start: {exc!r}", file=sys.stderr)
        return
    finally:
        placed.release()
    await play(ws, spec, counters, go, stop)


async def place(spec: ClientSpec):
    import websockets

    ws = await websockets.connect(
        f"{spec.url}/ws/world?token={spec.token}", max_size=None, compression=None, ping_interval=None, open_timeout=60
    )
    spot = spec.spot
    await ws.recv()  # connection_established
    await ws.send(json.dumps({"type": "zone_change", "zone": ZONE}))
    # Players enter at the spawn point; the benchmark lifts WORLD_MAX_STEP to jump to their spot,
    # and a client counts as placed once that jump is acknowledged.
    await ws.send(json.dumps({"type": "player_movement", "zone": ZONE, "x": spot[0], "y": spot[1], "id": "spot"}))
    while '"id":"spot"' not in await ws.recv():
        pass
    return ws


async def play(ws, spec: ClientSpec, counters: Counters, go: asyncio.Event, stop: asyncio.Event) -> None:
    spot, kind, rate = spec.spot, spec.kind, spec.rate
    frames = counters.frames[kind]
    seen = 0

    async def read() -> None:
        nonlocal seen
        async for text in ws:
            kind_end = text.find('"', 9)
            frame_type = text[9:kind_end]  # every frame starts with {"type":"
            frames[frame_type] = frames.get(frame_type, 0) + 1
            if frame_type == "player_movement":
                seen += 1
                if seen % LATENCY_SAMPLE == 0:
                    stamp = datetime.fromisoformat(text[-26:-2]).timestamp()
                    counters.latencies.append(time.time() - stamp)
            elif frame_type == "error":
                counters.errors += 1

    reader = asyncio.get_running_loop().create_task(read())
    if spec.moving:
        rng = random.Random(spec.seed)
        x, y = spot
        # Near players wander inside the cluster; far ones around their own spot.
        centre, reach = (CLUSTER_CENTRE, CLUSTER_RADIUS) if kind == "near" else (spot, 20.0)
        interval = 1.0 / rate
        await asyncio.sleep(rng.uniform(0, interval))  # spread the clients over the period
        next_at = time.monotonic()
        while not stop.is_set():
            if not go.is_set():  # paused to measure the idle cost of the connections
                await go.wait()
                next_at = time.monotonic()
            angle = rng.uniform(0, 2 * math.pi)
            nx, ny = x + 5 * math.cos(angle), y + 5 * math.sin(angle)
            if math.dist((nx, ny), centre) <= reach:
                x, y = nx, ny
            await ws.send(f'{{"type":"player_movement","zone":"{ZONE}","x":{x:.3f},"y":{y:.3f}}}')
            counters.moves += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await stop.wait()
    await ws.close()
    reader.cancel()


def worker_main(pipe, index: int) -> None:
    asyncio.run(_worker(pipe, index))


async def _worker(pipe, index: int) -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    stop, go = asyncio.Event(), asyncio.Event()
    go.set()
    tasks: list[asyncio.Task] = []
    # Players being placed at once per worker: all enter at the spawn point, where each one
    # hears about the others, so a wide window makes the setup quadratic.
    window = 8
    gate = asyncio.Semaphore(window)
    while True:
        command, payload = await loop.run_in_executor(None, pipe.recv)
        if command == "clients":
            for n, (url, token, spot, moving) in enumerate(payload["clients"]):
                kind = payload["kind"]
                spec = ClientSpec(url, token, spot, moving, payload["rate"], kind, hash((index, n, kind)))
                await gate.acquire()
                tasks.append(loop.create_task(run_client(spec, counters, gate, go, stop)))
            for _ in range(window):  # every client placed
                await gate.acquire()
            for _ in range(window):
                gate.release()
            pipe.send(len(payload["clients"]))
        elif command in ("pause", "resume"):
            go.set() if command == "resume" else go.clear()
            pipe.send(command)
        elif command == "snapshot":
            pipe.send(counters.snapshot())
        elif command == "stop":
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
            pipe.send("stopped")
            return


# --- servers -----------------------------------------------------------------------------------


class Servers:
    def __init__(self, instances: int, workdir: Path) -> None:
        self.redis = RedisServer()
        self.workdir = workdir
        self.database = workdir / "bench.sqlite3"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))},
            "DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{self.database}",
            "LOG_LEVEL": "WARNING",
            "JWT_ACCESS_TOKEN_LIFETIME": "7200",
            # Lifted limits: the benchmark measures fan-out, not the abuse guards.
            "WEBSOCKET_RATE_LIMIT": "0",
            "WORLD_MOVE_RATE_LIMIT": "0",
            "WORLD_MAX_STEP": "100000",
            "WEBSOCKET_CONNECTION_TIMEOUT": "3600",
            "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "0",
        }
        self.ports = [free_port() for _ in range(instances)]
        self.processes: list[subprocess.Popen] = []

    def prepare(self, players: int) -> list[str]:
        """Migrate a scratch database, add the bench zone and players; returns access tokens."""
        for name in ("DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL"):
            os.environ[name] = self.env[name]
        os.environ["JWT_ACCESS_TOKEN_LIFETIME"] = self.env["JWT_ACCESS_TOKEN_LIFETIME"]
        os.environ["REDIS_URL"] = ""  # this process only writes the database
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from rest_framework_simplejwt.tokens import AccessToken

        from realtime.models import Zone

        call_command("migrate", verbosity=0)
        Zone.objects.create(
            name=ZONE, max_x=ZONE_SIZE, max_y=ZONE_SIZE, spawn_x=SPAWN[0], spawn_y=SPAWN[1], title="Benchmark"
        )
        User = get_user_model()
        users = [User(username=f"bench{i}", password="!") for i in range(players)]  # unusable password
        User.objects.bulk_create(users, batch_size=500)
        return [str(AccessToken.for_user(user)) for user in users]

    def start(self) -> None:
        self.redis.start()
        for n, port in enumerate(self.ports):
            log = (self.workdir / f"daphne-{n}.log").open("ab")
            env = {**self.env, "REDIS_URL": self.redis.url, "INSTANCE_ID": f"bench{n}-{port}"}
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "daphne",
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "rpgrealtime.asgi:application",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for port in self.ports:
            wait_for_port(port, 30)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{port}" for port in self.ports]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.wait(15)
            if process.poll() is None:
                process.kill()
        self.redis.stop()


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


# --- orchestration -----------------------------------------------------------------------------


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"moves": 0, "frames": {"near": {}, "far": {}}, "latencies": [], "errors": 0}
    for snap in snapshots:
        merged["moves"] += snap["moves"]
        merged["errors"] += snap["errors"]
        merged["latencies"].extend(snap["latencies"])
        for kind in ("near", "far"):
            for frame_type, count in snap["frames"][kind].items():
                merged["frames"][kind][frame_type] = merged["frames"][kind].get(frame_type, 0) + count
    return merged


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


AOI_TYPES = ("player_movement", "player_entered", "player_left")


def row_of(args, far, elapsed, cpu_servers, cpu_redis, cpu_gen, idle_rate, data) -> dict[str, Any]:  # noqa: PLR0917
    moves = data["moves"]
    near_frames, far_frames = data["frames"]["near"], data["frames"]["far"]
    near_aoi = sum(near_frames.get(t, 0) for t in AOI_TYPES)
    far_aoi = sum(far_frames.get(t, 0) for t in AOI_TYPES)
    per_move = (lambda cpu: round(1e6 * cpu / moves, 1)) if moves else (lambda cpu: None)
    return {
        "far_players": far,
        "near_players": args.near,
        "seconds": round(elapsed, 2),
        "moves_per_second": round(moves / elapsed, 1),
        "frames_per_near_client_per_second": round(near_aoi / args.near / elapsed, 1),
        # Every near player hears every other near player's moves.
        "expected_frames_per_near_client_per_second": round(moves / elapsed * (args.near - 1) / args.near, 1),
        "frames_per_far_client_per_second": round(far_aoi / far / elapsed, 3) if far else None,
        "server_cpu_percent": round(100 * cpu_servers / elapsed, 1),
        "server_idle_cpu_percent": round(100 * idle_rate, 1),
        "server_cpu_us_per_move": per_move(cpu_servers),
        "server_cpu_us_per_move_over_idle": per_move(cpu_servers - idle_rate * elapsed),
        "redis_cpu_us_per_move": per_move(cpu_redis),
        "generator_cpu_percent": round(100 * cpu_gen / elapsed, 1),
        "latency_ms_p50": round(1000 * percentile(data["latencies"], 0.5), 1) if data["latencies"] else None,
        "latency_ms_p99": round(1000 * percentile(data["latencies"], 0.99), 1) if data["latencies"] else None,
        "errors": data["errors"],
        "frames_near": near_frames,
        "frames_far": far_frames,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    fars = sorted(int(n) for n in args.far.split(","))
    total_players = args.near + fars[-1]
    workdir = Path(tempfile.mkdtemp(prefix="rpgrt-bench-"))
    servers = Servers(args.instances, workdir)
    print(f"preparing {total_players} players in {workdir}", flush=True)
    tokens = servers.prepare(total_players)
    servers.start()
    server_pids = [p.pid for p in servers.processes]
    redis_pid = servers.redis.process.pid
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for index in range(args.workers):
        parent, child = context.Pipe()
        process = context.Process(target=worker_main, args=(child, index), daemon=True)
        process.start()
        pipes.append(parent)
        workers.append(process)
    worker_pids = [w.pid for w in workers]
    rng = random.Random(1)
    urls = servers.urls

    def hand_out(clients: list[tuple], kind: str) -> None:
        for w, pipe in enumerate(pipes):
            rate = args.rate if kind == "near" else args.far_rate
            pipe.send(("clients", {"clients": clients[w :: len(pipes)], "kind": kind, "rate": rate}))
        for pipe in pipes:
            pipe.recv()

    def snapshot() -> dict[str, Any]:
        for pipe in pipes:
            pipe.send(("snapshot", None))
        return merge([pipe.recv() for pipe in pipes])

    def command(name: str) -> None:
        for pipe in pipes:
            pipe.send((name, None))
        for pipe in pipes:
            pipe.recv()

    def cpu() -> tuple[float, float, float]:
        return cpu_seconds(server_pids), cpu_seconds([redis_pid]), cpu_seconds(worker_pids)

    def window(seconds: float) -> tuple[float, tuple[float, float, float], dict[str, Any]]:
        snapshot()
        before, started = cpu(), time.monotonic()
        time.sleep(seconds)
        data = snapshot()
        elapsed = time.monotonic() - started
        return elapsed, tuple(b - a for a, b in zip(before, cpu(), strict=True)), data

    rows = []
    try:
        near_clients = [(urls[i % len(urls)], tokens[i], near_spot(rng), True) for i in range(args.near)]
        hand_out(near_clients, "near")
        print(f"{args.near} near players moving at {args.rate} Hz", flush=True)
        far_positions = far_spots(fars[-1])
        placed = 0
        for far in fars:
            batch = [
                (urls[(args.near + i) % len(urls)], tokens[args.near + i], far_positions[i], args.far_rate > 0)
                for i in range(placed, far)
            ]
            if batch:
                hand_out(batch, "far")
            placed = far
            # Idle first: what the open connections cost with nobody moving.
            command("pause")
            time.sleep(1.0)
            idle_elapsed, (idle_servers, _, _), _ = window(args.idle_seconds)
            idle_rate = idle_servers / idle_elapsed
            command("resume")
            time.sleep(args.settle)
            for _ in range(args.repeat):  # back-to-back windows show the noise of a shared machine
                elapsed, (cpu_servers, cpu_redis, cpu_gen), data = window(args.seconds)
                rows.append(row_of(args, far, elapsed, cpu_servers, cpu_redis, cpu_gen, idle_rate, data))
                print(json.dumps({k: v for k, v in rows[-1].items() if not k.startswith("frames_")}), flush=True)
    finally:
        for pipe in pipes:
            with contextlib.suppress(Exception):
                pipe.send(("stop", None))
        for pipe in pipes:
            with contextlib.suppress(Exception):
                if pipe.poll(15):
                    pipe.recv()
        for process in workers:
            process.join(5)
            if process.is_alive():
                process.kill()
        servers.stop()
    return {
        "benchmark": "movement",
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {
            "instances": args.instances,
            "near": args.near,
            "far": fars,
            "rate_hz": args.rate,
            "far_rate_hz": args.far_rate,
            "seconds": args.seconds,
            "repeat": args.repeat,
            "workers": args.workers,
            "radius": 100,
            "layer": "channels_redis.pubsub + private redis-server",
        },
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"# Movement benchmark, {result['when']}",
        "",
        f"{s['near']} near players moving at {s['rate_hz']} Hz in one cluster of `{ZONE}`; far players "
        f"{'moving at ' + str(s['far_rate_hz']) + ' Hz' if s['far_rate_hz'] else 'connected and placed, idle'}; "
        f"{s['instances']} daphne instance(s), Redis pub/sub layer, {s['workers']} load-generator processes, "
        f"{result['machine']['cpus']} CPUs shared by all. Each row is one {s['seconds']} s window "
        f"({s['repeat']} per far count).",
        "",
        "| far players | moves/s | frames/s per near client (expected) | frames/s per far client "
        "| server CPU % (idle %) | server CPU µs/move (over idle) | Redis CPU µs/move | latency p50 / p99 ms "
        "| generator CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        far_frames = "–" if r["frames_per_far_client_per_second"] is None else r["frames_per_far_client_per_second"]
        lines.append(
            f"| {r['far_players']} | {r['moves_per_second']} | {r['frames_per_near_client_per_second']} "
            f"({r['expected_frames_per_near_client_per_second']}) | {far_frames} "
            f"| {r['server_cpu_percent']} ({r['server_idle_cpu_percent']}) "
            f"| {r['server_cpu_us_per_move']} ({r['server_cpu_us_per_move_over_idle']}) "
            f"| {r['redis_cpu_us_per_move']} | {r['latency_ms_p50']} / {r['latency_ms_p99']} "
            f"| {r['generator_cpu_percent']} |"
        )
    lines += [
        "",
        "Latency: server timestamp of a `player_movement` frame to its arrival at a client (ms resolution). "
        "Server CPU: all daphne processes together, in % of one core; idle: the same connections with "
        "nobody moving; over idle: the moving window's CPU minus the idle rate, per move.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2, choices=(1, 2))
    parser.add_argument("--near", type=int, default=50)
    parser.add_argument("--far", default="0,500,1500", help="far player counts, comma separated")
    parser.add_argument("--rate", type=float, default=10.0, help="moves per second per near player")
    parser.add_argument("--far-rate", type=float, default=0.0, help="moves per second per far player")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per row")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between adding players and measuring")
    parser.add_argument("--repeat", type=int, default=2, help="measurement windows per far count")
    parser.add_argument("--idle-seconds", type=float, default=4.0, help="idle window per row (nobody moves)")
    parser.add_argument("--workers", type=int, default=3, help="load-generator processes")
    args = parser.parse_args()
    result = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"movement-{datetime.now():%Y%m%d-%H%M%S}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {stem}.json, {stem}.md")


if __name__ == "__main__":
    main()
