"""Benchmarks of rpgrealtime (not part of the test suite). One command per workload:

    .venv/bin/python bench/run.py fanout --subscribers 1000 --rate 100 --instances 2
    .venv/bin/python bench/run.py connect --connections 2000
    .venv/bin/python bench/run.py chatmix --users 2000
    .venv/bin/python bench/run.py fanout --peer socketio ...   # the python-socketio reference peer
    .venv/bin/python bench/run.py sweep --rates 10,25,50,100,150 # latency against load, with a plot
    .venv/bin/python bench/run.py movement --instances 2           # area of interest (bench/movement.py)
    .venv/bin/python bench/run.py storm --clients 1000 --signal TERM  # reconnect storm and recovery (bench/storm.py)
    .venv/bin/python bench/run.py capacity --connections 19000       # idle players per instance (bench/capacity.py)

Each run starts a private redis-server, migrates a scratch database, creates users and real JWTs,
starts the servers with production settings (DEBUG off, limits lifted), drives them with the Node
load generator in bench/loadgen (which reports its own CPU), samples server CPU and RSS, and
writes JSON and a markdown table to bench/results/ (the table also on stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
LOADGEN = ROOT / "bench" / "loadgen"
# A scratch database every workload recreates (pass --database-url postgres://… for PostgreSQL).
DEFAULT_DATABASE_URL = f"sqlite:///{Path(tempfile.gettempdir()) / 'rpgrealtime-bench.sqlite3'}"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "rpgrealtime.settings.base",
    "DEBUG": "false",
    "SECRET_KEY": SECRET,
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
    "WEBSOCKET_RATE_LIMIT": "0",
    "CHAT_RATE_LIMIT": "0",
    "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "0",
    "WEBSOCKET_MAX_CONNECTIONS_PER_IP": "0",
    "WEBSOCKET_SEND_BUFFER_BYTES": str(8 << 20),
    "JWT_ACCESS_TOKEN_LIFETIME": "7200",
}


# --- setup -------------------------------------------------------------------------------------


def configure_django(database_url: str) -> None:
    os.environ.update({k: v for k, v in SERVER_ENV.items() if k != "LOG_LEVEL"})
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = ""
    import django

    django.setup()


def prepare_database(database_url: str, users: int) -> list[str]:
    """Fresh schema, `users` players, one access token each."""
    from django.core.management import call_command

    configure_django(database_url)
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    else:
        call_command("flush", interactive=False, verbosity=0)
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    User = get_user_model()
    existing = User.objects.count()
    batch = [User(username=f"bench{i}") for i in range(existing, users)]
    for user in batch:
        user.set_unusable_password()
    User.objects.bulk_create(batch, batch_size=1000)
    accounts = list(User.objects.order_by("username")[:users])
    return [str(AccessToken.for_user(user)) for user in accounts], accounts


def ensure_loadgen() -> None:
    if not (LOADGEN / "node_modules" / "ws").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=LOADGEN, check=True)


class Sampler(threading.Thread):
    """CPU seconds and peak RSS of the server processes while the load runs."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        import psutil

        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak_rss = {p.pid: 0 for p in self.procs}
        self.stop_event = threading.Event()
        self.start_cpu = {p.pid: sum(p.cpu_times()[:2]) for p in self.procs}
        self.start_split = {p.pid: p.cpu_times()[:2] for p in self.procs}

    def run(self) -> None:
        while not self.stop_event.is_set():
            for proc in self.procs:
                with contextlib.suppress(Exception):
                    self.peak_rss[proc.pid] = max(self.peak_rss[proc.pid], proc.memory_info().rss)
            time.sleep(0.25)

    def rss(self) -> dict[int, int]:
        return {p.pid: p.memory_info().rss for p in self.procs}

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        cpu, split = {}, {}
        for proc in self.procs:
            try:
                times = proc.cpu_times()
                cpu[proc.pid] = round(sum(times[:2]) - self.start_cpu[proc.pid], 2)
                user0, system0 = self.start_split[proc.pid]
                split[proc.pid] = {"user": round(times[0] - user0, 2), "system": round(times[1] - system0, 2)}
            except Exception:
                cpu[proc.pid] = None
        return {
            "server_cpu_seconds": cpu,
            "server_cpu_user_system": split,
            "server_cpu_seconds_total": round(sum(v for v in cpu.values() if v), 2),
            "server_peak_rss_mb": {pid: round(v / 2**20, 1) for pid, v in self.peak_rss.items()},
        }


def start_servers(args: argparse.Namespace, database_url: str):
    from tests.support.cluster import RedisServer, ServerProcess

    UvicornProcess = _uvicorn_process_class()

    redis = RedisServer().start()
    servers = []
    if args.peer == "raw":
        from bench.peers.raw_peer import RawPeerProcess

        for i in range(args.instances):
            servers.append(RawPeerProcess(f"raw{i}", secret=SECRET).start())
        print(f"server pids: {' '.join(str(s.process.pid) for s in servers)}", file=sys.stderr, flush=True)
        return redis, servers
    if args.peer == "socketio":
        from bench.peers.socketio_peer import SocketioPeerProcess

        for i in range(args.instances):
            servers.append(SocketioPeerProcess(f"peer{i}", redis_url=redis.url, secret=SECRET).start())
        print(f"server pids: {' '.join(str(s.process.pid) for s in servers)}", file=sys.stderr, flush=True)
        return redis, servers
    env = {**SERVER_ENV, "DATABASE_URL": database_url}
    kind = UvicornProcess if getattr(args, "server", "daphne") == "uvicorn" else ServerProcess
    for i in range(args.instances):
        servers.append(kind(f"bench{i}", redis=redis, base_env={}, env=env, daphne_args=["-v", "0"]).start())
    print(f"server pids: {' '.join(str(s.process.pid) for s in servers)}", file=sys.stderr, flush=True)
    return redis, servers


def _uvicorn_process_class():
    from tests.support.cluster import ServerProcess

    class UvicornProcess(ServerProcess):
        """The same application under uvicorn (websockets implementation, lifespan on)."""

        def command(self) -> list[str]:
            return [
                sys.executable, "-m", "uvicorn", "rpgrealtime.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--ws", "websockets", "--lifespan", "on", "--log-level", "warning",
                "--no-access-log",
            ]  # fmt: skip

    return UvicornProcess


def run_loadgen(config: dict[str, Any], on_stderr_line=None, timeout: float = 900) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
        path = handle.name
    process = subprocess.Popen(
        ["node", str(LOADGEN / "loadgen.js"), path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def pump() -> None:
        for line in process.stderr:
            if on_stderr_line:
                on_stderr_line(line.strip())
            else:
                sys.stderr.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    # Not communicate(): it would read stderr too, racing the pump for the HOLDING line.
    out = process.stdout.read()
    process.wait(timeout)
    reader.join(10)
    os.unlink(path)
    if process.returncode != 0:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def write_result(name: str, result: dict[str, Any]) -> Path:
    """JSON of the run plus a markdown table next to it (`<name>-<time>.json/.md`, `-latest`)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    text = json.dumps(result, indent=2, default=str)
    table = markdown_table(result)
    for target in (path, RESULTS / f"{name}-latest.json"):
        target.write_text(text)
        target.with_suffix(".md").write_text(table)
    return path


def markdown_table(result: dict[str, Any]) -> str:
    if result["workload"] in ("fanout", "sweep"):
        rows = result.get("runs") or result.get("points") or [result]
        return FANOUT_HEADER + "\n" + "\n".join(markdown_row({**setup_info_of(result), **row}) for row in rows) + "\n"
    flat = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
    lines = ["| measure | value |", "|---|---|"] + [f"| {key} | {value} |" for key, value in flat.items()]
    return "\n".join(lines) + "\n"


def setup_info_of(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in ("server", "instances") if key in result}


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {"cpus": psutil.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


# --- workloads ---------------------------------------------------------------------------------


def fanout_once(args, rate: float, tokens, servers) -> dict[str, Any]:
    urls = [s.ws for s in servers]
    config = {
        "workload": "fanout",
        "protocol": "socketio" if args.peer == "socketio" else "rpgrealtime",
        "path": "/ws/chat",
        "urls": urls,
        "tokens": tokens,
        "subscribers": args.subscribers,
        "rate": rate,
        "duration": args.duration,
        "drain_seconds": args.drain,
        "procs": args.procs,
        "client": args.client,
    }
    sampler = Sampler([s.process.pid for s in servers])
    sampler.start()
    result = run_loadgen(config)
    result.update(sampler.finish())
    result["server_cpu_percent_of_one_core"] = round(
        100 * result["server_cpu_seconds_total"] / max(0.001, result["send_seconds"] + args.drain + 1.5), 1
    )
    return result


def cmd_fanout(args) -> dict[str, Any]:
    """One fan-out measurement, or `--repeat N` of them against the same servers (the result is
    the run with the median p99; every run is kept under "runs")."""
    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.subscribers + 1)
    redis, servers = start_servers(args, args.database_url)
    runs = []
    try:
        for _ in range(args.repeat):
            runs.append(fanout_once(args, args.rate, tokens, servers))
            if args.repeat > 1:
                print(markdown_row({**runs[-1], **setup_info(args)}), flush=True)
                time.sleep(2.0)
    finally:
        stop(redis, servers)
    ranked = sorted(runs, key=lambda r: r["latency"]["p99_ms"] or float("inf"))
    result = dict(ranked[len(ranked) // 2])
    if args.repeat > 1:
        result["runs"] = runs
        result["p99_ms_of_runs"] = [r["latency"]["p99_ms"] for r in runs]
        result["delivered_pct_of_runs"] = [r["delivered_pct"] for r in runs]
    result.update(setup_info(args))
    return result


def cmd_sweep(args) -> dict[str, Any]:
    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.subscribers + 1)
    redis, servers = start_servers(args, args.database_url)
    points = []
    try:
        for rate in [float(r) for r in args.rates.split(",")]:
            point = fanout_once(args, rate, tokens, servers)
            points.append(point)
            print(markdown_row(point), flush=True)
            time.sleep(1.0)
    finally:
        stop(redis, servers)
    return {"workload": "sweep", "points": points, **setup_info(args)}


def cmd_connect(args) -> dict[str, Any]:
    ensure_loadgen()
    tokens, _ = prepare_database(args.database_url, args.connections)
    redis, servers = start_servers(args, args.database_url)
    try:
        time.sleep(1.0)
        sampler = Sampler([s.process.pid for s in servers])
        baseline = sampler.rss()
        held: dict[str, Any] = {}

        def on_line(line: str) -> None:
            if line.startswith("HOLDING"):
                time.sleep(1.5)  # let allocations settle
                held["rss"] = sampler.rss()

        sampler.start()
        config = {
            "workload": "connect",
            "protocol": "socketio" if args.peer == "socketio" else "rpgrealtime",
            "path": args.path,
            "urls": [s.ws for s in servers],
            "tokens": tokens,
            "connections": args.connections,
            "concurrency": args.concurrency,
            "hold_seconds": 4,
            "client": args.client,
        }
        result = run_loadgen(config, on_line)
        result.update(sampler.finish())
        grown = sum(held["rss"][pid] - baseline[pid] for pid in baseline)
        result["server_rss_growth_mb"] = round(grown / 2**20, 1)
        result["server_kb_per_idle_connection"] = round(grown / 1024 / max(1, result["connections"]), 1)
    finally:
        stop(redis, servers)
    result.update(setup_info(args))
    return result


def cmd_chatmix(args) -> dict[str, Any]:
    ensure_loadgen()
    if args.peer:
        raise SystemExit("chatmix runs against rpgrealtime only")
    tokens, accounts = prepare_database(args.database_url, args.users)
    from accounts.models import Party, User

    parties = [Party(name=f"bench-party-{i}") for i in range(0, len(accounts), 5)]
    Party.objects.bulk_create(parties)
    for index, user in enumerate(accounts):
        user.party = parties[index // 5]
    User.objects.bulk_update(accounts, ["party"], batch_size=1000)
    redis, servers = start_servers(args, args.database_url)
    try:
        sampler = Sampler([s.process.pid for s in servers])
        sampler.start()
        config = {
            "workload": "chatmix",
            "protocol": "rpgrealtime",
            "path": "/ws/chat",
            "urls": [s.ws for s in servers],
            "tokens": tokens,
            "duration": args.duration,
            "party_interval": args.party_interval,
            "global_every": args.global_every,
            "drain_seconds": args.drain,
            "client": args.client,
        }
        result = run_loadgen(config)
        result.update(sampler.finish())
    finally:
        stop(redis, servers)
    result.update(setup_info(args))
    return result


def stop(redis, servers) -> None:
    for server in servers:
        try:
            server.terminate(15)
        except Exception:
            server.kill()
    redis.stop()


def setup_info(args) -> dict[str, Any]:
    return {
        "server": args.peer or f"rpgrealtime ({getattr(args, 'server', 'daphne')})",
        "instances": args.instances,
        "database": args.database_url.split(":", 1)[0],
        "machine": machine(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --- reporting ---------------------------------------------------------------------------------


def markdown_row(result: dict[str, Any]) -> str:
    if result["workload"] == "fanout":
        lat = result["latency"]
        return (
            f"| {result.get('server', result['protocol'])} | {result['subscribers']} | {result['rate']:g} | "
            f"{result['deliveries_per_second']} | {result['delivered_pct']} % | {lat['p50_ms']} | {lat['p90_ms']} | "
            f"{lat['p99_ms']} | {lat['max_ms']} | {result['server_cpu_seconds_total']} | "
            f"{max(result['server_peak_rss_mb'].values())} | {result['loadgen_cpu_seconds']} |"
        )
    return json.dumps(result)


FANOUT_HEADER = (
    "| server | subscribers | msgs/s | deliveries/s | delivered | p50 ms | p90 ms | p99 ms | max ms "
    "| server CPU s | peak RSS MB/instance | loadgen CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


PLOT_PATH = ROOT / "docs" / "benchmarks-latency.png"


def plot_sweeps(path: Path = PLOT_PATH) -> None:
    """Latency against load for every latest sweep (rpgrealtime and the peer) on one chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -r bench/requirements.txt); no plot written", file=sys.stderr)
        return
    sweeps = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("sweep*-latest.json"))]
    if not sweeps:
        print("no sweep results yet", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for sweep in sweeps:
        points = [p for p in sweep["points"] if p["latency"]["count"]]
        load = [p["rate"] * p["subscribers"] / 1000 for p in points]
        label = sweep["server"]
        ax.plot(load, [p["latency"]["p99_ms"] for p in points], marker="o", label=f"{label} p99")
        ax.plot(load, [p["latency"]["p50_ms"] for p in points], marker=".", linestyle="--", label=f"{label} p50")
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("deliveries demanded per second (thousands): 1,000 subscribers over two instances")
    ax.set_ylabel("publish -> receive latency (ms, log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Fan-out latency against load (2-core machine, load generator on the same cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> None:
    # One entry point: the movement, storm, capacity, burst and churn workloads have their own scripts.
    for workload in ("movement", "storm", "capacity", "burst", "churn"):
        if sys.argv[1:2] == [workload]:
            os.execv(sys.executable, [sys.executable, str(ROOT / "bench" / f"{workload}.py"), *sys.argv[2:]])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="workload", required=True)

    def common(p):
        p.add_argument("--instances", type=int, default=2)
        p.add_argument(
            "--peer",
            choices=["socketio", "raw"],
            default=None,
            help="run a reference peer instead: python-socketio, or a bare websockets server (connect only)",
        )
        p.add_argument(
            "--database-url",
            default=DEFAULT_DATABASE_URL,
        )
        p.add_argument("--procs", type=int, default=1, help="load generator subscriber processes")
        p.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne", help="ASGI server for rpgrealtime")
        p.add_argument(
            "--client", choices=["raw", "ws"], default="raw", help="receiving client: raw parser or the ws package"
        )
        p.add_argument("--drain", type=float, default=3.0, help="seconds to wait for stragglers")

    fan = sub.add_parser("fanout")
    common(fan)
    fan.add_argument("--subscribers", type=int, default=1000)
    fan.add_argument("--rate", type=float, default=100)
    fan.add_argument("--duration", type=float, default=20)
    fan.add_argument("--repeat", type=int, default=1, help="measure N times; report the median-p99 run")

    sweep = sub.add_parser("sweep")
    common(sweep)
    sweep.add_argument("--subscribers", type=int, default=1000)
    sweep.add_argument("--rates", default="10,25,50,100,150,200")
    sweep.add_argument("--duration", type=float, default=10)

    con = sub.add_parser("connect")
    common(con)
    con.add_argument("--connections", type=int, default=2000)
    con.add_argument("--concurrency", type=int, default=100)
    con.add_argument("--path", default="/ws/chat")

    mix = sub.add_parser("chatmix")
    common(mix)
    mix.add_argument("--users", type=int, default=2000)
    mix.add_argument("--duration", type=float, default=30)
    mix.add_argument("--party-interval", type=float, default=5.0, help="seconds between a user's party messages")
    mix.add_argument("--global-every", type=int, default=50, help="every Nth user also chats globally")

    sub.add_parser("plot", help="draw docs/benchmarks-latency.png from the latest sweeps")

    args = parser.parse_args()
    if args.workload == "plot":
        plot_sweeps()
        return
    if args.peer == "raw" and args.workload != "connect":
        raise SystemExit("the raw websockets peer only answers connects (no Redis, no rooms)")
    if not shutil.which("node"):
        raise SystemExit("the load generator needs Node.js (node) on PATH")
    result = {"fanout": cmd_fanout, "sweep": cmd_sweep, "connect": cmd_connect, "chatmix": cmd_chatmix}[args.workload](
        args
    )
    name = f"{args.workload}-{args.peer}" if args.peer else args.workload
    path = write_result(name, result)
    if result["workload"] == "sweep":
        plot_sweeps()
    if result["workload"] == "fanout":
        print(FANOUT_HEADER)
        print(markdown_row(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=2, default=str))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
