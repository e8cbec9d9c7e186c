"""Compression benchmark: what permessage-deflate (RFC 7692) would save on our frames, and what it would cost.

    .venv/bin/python bench/compression.py                # about 30 s on two busy cores
    .venv/bin/python bench/compression.py --quick        # smaller samples, for a look

No server is started: the frames are built with the project's own code (the chat model's
`to_frame`, stream stamping, the world's `announce`, the combat engine and its frames, presence's
`announce_status`, the protocol's `encode`/`with_id`), and deflated in this process exactly as a
permessage-deflate sender would (raw deflate, a sync flush, the trailing 00 00 ff ff removed).
Measured, per frame kind and compressor setting (level, windowBits, memLevel):

- size: payload and wire bytes, raw and deflated, for one frame compressed on its own (no context
  takeover) and for a stream of consecutive frames through one compressor (context takeover);
- CPU: microseconds per compression, for a fresh compressor per message (what
  `server_no_context_takeover` means) and for a compressor kept per connection;
- memory: zlib compressor and decompressor state per connection (tracemalloc, and RSS for many);
- the send: CPU of one `socket.send` of a raw and of a deflated frame on loopback TCP.

Two deployment models are derived from these and the published fan-out and connection results:
(a) one compression per broadcast per instance, the same compressed frame written to every local
socket; (b) a compressor per connection with context takeover, one compression per delivery.
Every timing is the median of --repeat runs. Writes bench/results/compression-<time>.json (and
`-latest.json`) and prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PUBLISHED = RESULTS / "published"

# permessage-deflate strips this from the end of every compressed message (RFC 7692 §7.2.1).
SYNC_TAIL = b"\x00\x00\xff\xff"


@dataclass(frozen=True)
class Deflate:
    """One compressor setting. windowBits 9 is zlib's smallest for raw deflate (8 becomes 9)."""

    level: int
    wbits: int
    mem_level: int

    @property
    def name(self) -> str:
        return f"L{self.level} w{self.wbits} m{self.mem_level}"

    def compressor(self) -> Any:
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.wbits, self.mem_level)


# What a single frame is measured with: levels 1 (fastest) and 6 (zlib's default, autobahn's and
# most servers'), each with zlib's default memLevel 8 and a small one (less to set up per fresh
# compressor), and the `websockets` library's server setting (windowBits 12, memLevel 5).
SINGLE = (Deflate(1, 15, 8), Deflate(6, 15, 8), Deflate(1, 15, 4), Deflate(6, 15, 4), Deflate(6, 12, 5))
# What a per-connection compressor is measured with: zlib's defaults, the `websockets` library's
# server defaults (windowBits 12, memLevel 5), and the smallest zlib allows.
PER_CONNECTION = (Deflate(6, 15, 8), Deflate(1, 15, 8), Deflate(6, 12, 5), Deflate(6, 9, 1))


# --- frames, built with the project's code -----------------------------------------------------


# What players say most often, short and repeated; everything else is a distinct sentence.
SHORT_LINES = [
    "gg", "lol", "ok", "brb", "thanks!", "nice crit", "afk 10 min", "welcome back!", "party full, sorry",
    "good morning everyone", "meet at the fountain in 5", "dragon down!! 🐉", "anyone up for the troll cave?",
    "LFG dragon, need a healer", "wts iron sword, 50g",
]  # fmt: skip
SHORT_SHARE = 0.2
PLAYER_NAMES = [
    "Aldric", "Brienne", "Cassius", "Dorian", "Elowen", "Fenwick", "Gwyn", "Halvard", "Isolde", "Jorah",
    "Kestrel", "Lyra", "Mira", "Nyx", "Orin", "Perrin", "Quill", "Rowan", "Seren", "Thorne",
    "Ulric", "Vesper", "Wren", "Xander", "Yara", "Zephyr", "ashen_wolf", "darkblade99", "moonpetal", "sir_loin",
]  # fmt: skip
ZONE = "starter_town"


@dataclass(frozen=True)
class Players:
    ids: list[str]
    names: list[str]


def _players(rng: random.Random, count: int = 30) -> Players:
    return Players([str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)], PLAYER_NAMES[:count])


def _sentences() -> list[str]:
    """Distinct English sentences of chat length (the project's own prose, markdown removed): chat
    text that never repeats, so context takeover gains only what real chat would give it."""
    lines = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", "|", "!", "<", ">")):
                continue
            line = re.sub(r"^[-*\d.]+\s+", "", line)  # list markers
            line = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)  # links: their text
            lines.append(line.replace("`", "").replace("**", ""))
    found = re.split(r"(?<=[.!?])\s+", " ".join(lines))
    return sorted({s.strip() for s in found if 12 <= len(s.strip()) <= 140})


def _chat_messages(rng: random.Random, players: Players, count: int) -> list[Any]:
    """Unsaved chat rows with realistic authors, lines and times (one every 0.2–4 s): a fifth
    short common lines, the rest sentences used once each."""
    from realtime.models import ChatMessage

    unused = _sentences()
    rng.shuffle(unused)
    moment = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
    rows = []
    for _ in range(count):
        author = rng.randrange(len(players.ids))
        moment += timedelta(seconds=rng.uniform(0.2, 4.0))
        rows.append(
            ChatMessage(
                message_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                channel="global",
                conversation="global",
                sender_id=players.ids[author],
                sender_name=players.names[author],
                content=rng.choice(SHORT_LINES) if rng.random() < SHORT_SHARE or not unused else unused.pop(),
                created_at=moment,
            )
        )
    return rows


def chat_stream(rng: random.Random, players: Players, count: int) -> list[str]:
    """`chat_message` frames of global chat as delivered live: stamped with stream, offset, epoch."""
    from realtime.protocol import encode, streams
    from realtime.streams import new_epoch, stamped

    epoch = new_epoch()
    start = rng.randrange(1_000, 50_000)
    return [
        stamped(encode(row.to_frame()), streams.chat_global(), start + i, epoch)
        for i, row in enumerate(_chat_messages(rng, players, count))
    ]


def history_page(rng: random.Random, players: Players) -> str:
    """A `history` reply with 50 messages, as the chat consumer answers `history_request`."""
    from realtime.protocol import encode, with_id
    from realtime.protocol.chat import HISTORY_DEFAULT_LIMIT

    rows = _chat_messages(rng, players, HISTORY_DEFAULT_LIMIT)
    reply = {"type": "history", "channel": "global", "messages": [r.to_frame() for r in rows], "has_more": True}
    return with_id(encode(reply), "h-17")


def _capture_broadcasts(module: Any) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], Callable[[], None]]:
    """Replace a feature module's `broadcast_to_channel` with a recorder; returns (calls, restore)."""
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
    original = module.broadcast_to_channel

    async def record(group: str, event: dict[str, Any], **options: Any) -> bool:
        calls.append((event, options))
        return True

    module.broadcast_to_channel = record

    def restore() -> None:
        module.broadcast_to_channel = original

    return calls, restore


def movement_stream(rng: random.Random, players: Players, count: int) -> list[str]:
    """`player_movement` frames as a watcher in a crowd receives them: players near each other
    walking at the browser client's pace (12 units per 100 ms tick, rounded to 0.1), built by the
    world's own `announce`."""
    from realtime.features.world import views
    from realtime.protocol import encode

    calls, restore = _capture_broadcasts(views)
    spots = {i: (300.0 + rng.uniform(-40, 40), 300.0 + rng.uniform(-40, 40)) for i in range(len(players.ids))}
    headings = {i: rng.uniform(0, 6.283) for i in spots}

    async def walk() -> None:
        for _ in range(count):
            i = rng.randrange(len(players.ids))
            old = spots[i]
            headings[i] += rng.uniform(-0.5, 0.5)
            step = 12.0
            new = (
                round(min(max(old[0] + step * math.cos(headings[i]), 200.0), 400.0), 1),
                round(min(max(old[1] + step * math.sin(headings[i]), 200.0), 400.0), 1),
            )
            spots[i] = new
            await views.announce(zone=ZONE, user_id=players.ids[i], username=players.names[i], old=old, new=new)

    try:
        asyncio.run(walk())
    finally:
        restore()
    # A move across a cell border is published twice (new cell, then old cell with `skip_*` set);
    # a watcher gets one copy: keep the first.
    frames = [
        encode(event)
        for event, options in calls
        if event["type"] == "player_movement" and options["filter_args"][6] is None
    ]
    return frames[:count]


def combat_stream(rng: random.Random, players: Players, count: int) -> tuple[list[str], list[str]]:
    """The frames of 4-participant fights (two players, a troll and a wolf) as the fight's stream
    carries them: `combat_action_result` and `combat_state` after each step, stamped with the
    stream's position. Returns (every frame of the stream, the `combat_state` frames alone)."""
    from realtime.features.combat.engine import PLAYER, PlayerEntry, act, begin, new_combat
    from realtime.features.combat.frames import effects_of
    from realtime.protocol import encode, streams
    from realtime.protocol.catalogue import PLAYER_DEFAULT
    from realtime.streams import new_epoch, stamped

    everything: list[str] = []
    states: list[str] = []
    while len(everything) < count:
        session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        stream, epoch, offset = streams.combat(session_id), new_epoch(), 0
        a, b = rng.sample(range(len(players.ids)), 2)
        state = new_combat(
            seed=rng.getrandbits(32),
            players=[PlayerEntry(players.ids[i], players.names[i], PLAYER_DEFAULT) for i in (a, b)],
            monsters=["troll", "wolf"],
        )
        events = begin(state)
        while True:
            deadline = datetime.now(UTC) + timedelta(seconds=30)
            for effect in effects_of(session_id, events, state, deadline):
                if effect.kind == "group" and effect.event is not None:
                    offset += 1
                    text = stamped(encode(effect.event), stream, offset, epoch)
                    everything.append(text)
                    if effect.event["type"] == "combat_state":
                        states.append(text)
            if state.status != "active" or state.actor is None:
                break
            actor = state.fighter(state.actor)
            assert actor is not None and actor.kind == PLAYER
            targets = [f.id for f in state.monsters if f.alive]
            events = act(state, actor=actor.id, action=rng.choice(["attack", "attack", "defend"]), target=targets[0])
    return everything[:count], states


def player_status_frames(rng: random.Random, players: Players, count: int) -> list[str]:
    """`player_status` as presence announces it to a guild."""
    from realtime.features import presence
    from realtime.protocol import encode

    calls, restore = _capture_broadcasts(presence)
    guild = str(uuid.UUID(int=rng.getrandbits(128), version=4))

    async def announce() -> None:
        for _ in range(count):
            i = rng.randrange(len(players.ids))
            status = rng.choice(["online", "away", "busy", "offline"])
            await presence.announce_status(
                user_id=players.ids[i], username=players.names[i], status=status, guild_id=guild
            )

    try:
        asyncio.run(announce())
    finally:
        restore()
    return [encode(event) for event, _ in calls][:count]


def typing_frame(players: Players) -> str:
    from realtime.outbound import build_event
    from realtime.protocol import encode

    return encode(
        build_event("typing", user=players.names[0], user_id=players.ids[0], channel="global", is_typing=True)
    )


def connection_established(rng: random.Random, players: Players) -> str:
    """The first frame of a chat connection in a guild and a party (fields as the base consumer
    sends them, with the three chat streams' positions)."""
    from django.conf import settings

    from realtime.protocol import PROTOCOL_VERSION, encode, now_iso, streams
    from realtime.streams import Position, new_epoch

    positions = {
        streams.chat_global(): Position(rng.randrange(1_000, 50_000), new_epoch()),
        streams.chat_scope("guild", uuid.UUID(int=rng.getrandbits(128), version=4)): Position(412, new_epoch()),
        streams.chat_scope("party", uuid.UUID(int=rng.getrandbits(128), version=4)): Position(37, new_epoch()),
    }
    interval = settings.WEBSOCKET_HEARTBEAT_INTERVAL
    return encode(
        {
            "type": "connection_established",
            "connection_id": uuid.uuid4().hex,
            "endpoint": "chat",
            "user": {"id": players.ids[0], "username": players.names[0]},
            "heartbeat_interval": int(interval) if float(interval).is_integer() else interval,
            "protocol": PROTOCOL_VERSION,
            "streams": {name: position.as_wire() for name, position in positions.items()},
            "server_time": now_iso(),
        }
    )


# --- deflate ---------------------------------------------------------------------------------------


def deflate_alone(payload: bytes, setting: Deflate) -> bytes:
    """One message compressed with a fresh compressor (server_no_context_takeover)."""
    compressor = setting.compressor()
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def deflate_in_context(payloads: list[bytes], setting: Deflate) -> list[bytes]:
    """Consecutive messages through one compressor (context takeover)."""
    compressor = setting.compressor()
    return [(compressor.compress(p) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4] for p in payloads]


def inflate(messages: list[bytes], wbits: int, *, context: bool) -> list[bytes]:
    decompressor = zlib.decompressobj(-wbits)
    out = []
    for message in messages:
        if not context:
            decompressor = zlib.decompressobj(-wbits)
        out.append(decompressor.decompress(message + SYNC_TAIL))
    return out


def wire_size(payload_length: int) -> int:
    """A server frame: two header bytes, plus 2 or 8 for longer payloads (never masked)."""
    if payload_length <= 125:
        return payload_length + 2
    return payload_length + (4 if payload_length <= 0xFFFF else 10)


def decoded_by_autobahn(frame: bytes) -> bytes:
    """What autobahn's client-side permessage-deflate (negotiated with server_no_context_takeover)
    makes of a frame from `compressed_frame`: proof that model (a)'s bytes are a valid frame."""
    from autobahn.websocket.compress_deflate import PerMessageDeflate

    assert frame[0] == 0xC1, "FIN, RSV1 and the text opcode"
    length, start = frame[1], 2
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(frame[2:10], "big"), 10
    body = frame[start : start + length]
    client = PerMessageDeflate(False, True, True, 15, 15, 8)
    client.start_decompress_message()
    payload = client.decompress_message_data(body)
    client.end_decompress_message()
    return payload


def compressed_frame(payload: bytes, setting: Deflate) -> bytes:
    """The complete server frame of a compressed text message: FIN, RSV1 ("compressed"), opcode 1."""
    body = deflate_alone(payload, setting)
    length = len(body)
    if length <= 125:
        header = bytes((0xC1, length))
    elif length <= 0xFFFF:
        header = bytes((0xC1, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0xC1, 127)) + length.to_bytes(8, "big")
    return header + body


# --- timing ------------------------------------------------------------------------------------------


def median_us_per_call(run: Callable[[], int], repeat: int) -> float:
    """`run` does some calls and returns how many; CPU µs per call (this thread's CPU time, so
    time other processes take from the core is not counted), median of `repeat` runs."""
    samples = []
    for _ in range(repeat):
        gc.collect()
        start = time.thread_time()
        calls = run()
        samples.append((time.thread_time() - start) / calls * 1e6)
    return round(statistics.median(samples), 2)


def time_alone(payloads: list[bytes], setting: Deflate, rounds: int, repeat: int) -> float:
    def run() -> int:
        for _ in range(rounds):
            for payload in payloads:
                deflate_alone(payload, setting)
        return rounds * len(payloads)

    return median_us_per_call(run, repeat)


def time_in_context(payloads: list[bytes], setting: Deflate, rounds: int, repeat: int) -> float:
    flush = zlib.Z_SYNC_FLUSH

    def run() -> int:
        for _ in range(rounds):
            compressor = setting.compressor()
            for payload in payloads:
                (compressor.compress(payload) + compressor.flush(flush))[:-4]
        return rounds * len(payloads)

    return median_us_per_call(run, repeat)


def time_frame_build(payloads: list[bytes], rounds: int, repeat: int) -> float:
    """Today's cost of a broadcast's frame bytes: autobahn's PreparedMessage, once per instance."""
    from autobahn.websocket.protocol import PreparedMessage

    def run() -> int:
        for _ in range(rounds):
            for payload in payloads:
                PreparedMessage(payload, False, False, True).payloadHybi  # noqa: B018
        return rounds * len(payloads)

    return median_us_per_call(run, repeat)


# --- memory ----------------------------------------------------------------------------------------


def traced_bytes_per_object(make: Callable[[], Any], count: int) -> int:
    """Bytes zlib allocated per object that `make` returns (zlib allocates through PyMem_RawMalloc,
    which tracemalloc sees)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make() for _ in range(count)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return round((after - before) / count)


def per_connection_memory(setting: Deflate, sample: list[bytes], count: int) -> dict[str, Any]:
    """A connection's compressor after it sent `sample`, and its decompressor after it received
    the same (a client that compresses what it sends, with the same window)."""
    compressed = deflate_in_context(sample, setting)

    def compressor() -> Any:
        state = setting.compressor()
        for payload in sample:
            state.compress(payload)
            state.flush(zlib.Z_SYNC_FLUSH)
        return state

    def decompressor() -> Any:
        state = zlib.decompressobj(-setting.wbits)
        for message in compressed:
            state.decompress(message + SYNC_TAIL)
        return state

    return {
        "setting": setting.name,
        "compressor_bytes": traced_bytes_per_object(compressor, count),
        "decompressor_bytes": traced_bytes_per_object(decompressor, count),
    }


def resident_per_connection(setting: Deflate, sample: list[bytes], count: int) -> dict[str, Any]:
    """RSS growth per compressor+decompressor pair that carried `sample` (cross-checks tracemalloc:
    pages zlib allocated but never touched do not count)."""
    import psutil

    process = psutil.Process()
    compressed = deflate_in_context(sample, setting)
    gc.collect()
    before = process.memory_info().rss
    pairs = []
    for _ in range(count):
        out, back = setting.compressor(), zlib.decompressobj(-setting.wbits)
        for payload, message in zip(sample, compressed, strict=True):
            out.compress(payload)
            out.flush(zlib.Z_SYNC_FLUSH)
            back.decompress(message + SYNC_TAIL)
        pairs.append((out, back))
    grown = process.memory_info().rss - before
    del pairs
    return {"setting": setting.name, "pairs": count, "rss_bytes_per_pair": round(grown / count)}


# --- the send ------------------------------------------------------------------------------------------

_READER = """
import selectors, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
selector = selectors.DefaultSelector()
for _ in range(count):
    selector.register(socket.create_connection(("127.0.0.1", port)), selectors.EVENT_READ)
while selector.get_map():
    for key, _ in selector.select():
        if not key.fileobj.recv(1 << 20):
            selector.unregister(key.fileobj)
"""


def send_cost(sizes: dict[str, int], sockets: int, rounds: int, repeat: int) -> dict[str, float]:
    """Sender CPU (user + system) per `socket.send` of a frame of each size on loopback TCP, one
    send per socket in turn as a broadcast does, another process reading every socket: what the
    direct-write path pays per delivery, and whether fewer bytes make it cheaper."""
    server = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(server.getsockname()[1]), str(sockets)])
    connections = []
    try:
        for _ in range(sockets):
            connection, _ = server.accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as autobahn sets it
            connections.append(connection)
        result = {}
        for name, size in sizes.items():
            data = b"x" * size
            samples = []
            for _ in range(repeat):
                start = time.process_time()
                for _ in range(rounds):
                    for connection in connections:
                        connection.sendall(data)
                samples.append((time.process_time() - start) / (rounds * sockets) * 1e6)
            result[name] = round(statistics.median(samples), 2)
    finally:
        for connection in connections:
            connection.close()
        server.close()
        reader.wait(timeout=30)
    return result


# --- published results ---------------------------------------------------------------------------------


def published_fanout() -> dict[str, Any]:
    """Server CPU per delivery at 1,000 subscribers × 100 msg/s over two instances (all of it:
    Redis, the publisher's chat handling, the sends), and memory per idle connection."""
    fanout = json.loads((PUBLISHED / "fanout-1000x100.json").read_text())
    per_delivery = [run["server_cpu_seconds_total"] / run["received"] * 1e6 for run in fanout["runs"]]
    idle = [json.loads((PUBLISHED / f"connect-{n}.json").read_text()) for n in (2000, 4000)]
    return {
        "fanout_file": "bench/results/published/fanout-1000x100.json",
        "subscribers": fanout["subscribers"],
        "deliveries_per_second": round(statistics.median(run["deliveries_per_second"] for run in fanout["runs"])),
        "instances": 2,
        "local_members_per_instance": fanout["subscribers"] // 2,
        "server_cpu_us_per_delivery_runs": [round(v, 2) for v in per_delivery],
        "server_cpu_us_per_delivery": round(statistics.median(per_delivery), 2),
        "idle_connection_kb": {str(r["connections"]): r["server_kb_per_idle_connection"] for r in idle},
    }


# --- the run -----------------------------------------------------------------------------------------------


def build_frames(seed: int, sequence: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(frame kinds: a few samples each, for the per-frame table; streams: `sequence` consecutive
    frames each, for context takeover)."""
    rng = random.Random(seed)
    players = _players(rng)
    chat = chat_stream(rng, players, sequence)
    movement = movement_stream(rng, players, sequence)
    combat, states = combat_stream(rng, players, sequence)
    kinds = {
        "chat_message (stream)": chat[:50],
        "player_movement": movement[:50],
        "combat_state (4 fighters)": states[:20],
        "player_status": player_status_frames(rng, players, 20),
        "typing": [typing_frame(players)],
        "connection_established": [connection_established(rng, players) for _ in range(5)],
        "history (50 messages)": [history_page(rng, players) for _ in range(3)],
    }
    return kinds, {"chat (global)": chat, "movement (crowd)": movement, "combat (stream)": combat}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    kinds, sequences = build_frames(args.seed, args.sequence)
    repeat = args.repeat
    per_kind = []
    for kind, texts in kinds.items():
        payloads = [t.encode() for t in texts]
        raw = statistics.mean(len(p) for p in payloads)
        rounds = max(1, args.frames // len(payloads))
        row: dict[str, Any] = {
            "kind": kind,
            "samples": len(payloads),
            "raw_bytes": round(raw),
            "raw_wire_bytes": round(statistics.mean(wire_size(len(p)) for p in payloads)),
            "example": texts[0] if len(texts[0]) <= 1000 else texts[0][:1000] + "…",
            "frame_build_us": time_frame_build(payloads, rounds, repeat),
            "deflate": {},
        }
        for setting in SINGLE:
            bodies = [deflate_alone(p, setting) for p in payloads]
            assert inflate(bodies, setting.wbits, context=False) == payloads
            assert all(decoded_by_autobahn(compressed_frame(p, setting)) == p for p in payloads)
            size = statistics.mean(len(b) for b in bodies)
            row["deflate"][setting.name] = {
                "bytes": round(size),
                "wire_bytes": round(statistics.mean(wire_size(len(b)) for b in bodies)),
                "saved_pct": round(100 * (1 - size / raw), 1),
                "us_fresh_compressor": time_alone(payloads, setting, rounds, repeat),
            }
        per_kind.append(row)
        print(f"  measured {kind}", file=sys.stderr, flush=True)

    context = []
    for name, texts in sequences.items():
        payloads = [t.encode() for t in texts]
        raw = statistics.mean(len(p) for p in payloads)
        for setting in PER_CONNECTION:
            alone = [deflate_alone(p, setting) for p in payloads]
            kept = deflate_in_context(payloads, setting)
            assert inflate(kept, setting.wbits, context=True) == payloads
            context.append(
                {
                    "stream": name,
                    "frames": len(payloads),
                    "setting": setting.name,
                    "raw_bytes": round(raw),
                    "alone_bytes": round(statistics.mean(len(b) for b in alone)),
                    "context_bytes": round(statistics.mean(len(b) for b in kept)),
                    "saved_alone_pct": round(100 * (1 - statistics.mean(len(b) for b in alone) / raw), 1),
                    "saved_context_pct": round(100 * (1 - statistics.mean(len(b) for b in kept) / raw), 1),
                    "us_per_frame_context": time_in_context(payloads, setting, max(1, args.frames // 200), repeat),
                }
            )
        print(f"  measured stream {name}", file=sys.stderr, flush=True)

    sample = [t.encode() for t in sequences["chat (global)"]]
    memory = [per_connection_memory(s, sample, args.memory_objects) for s in PER_CONNECTION]
    resident = [resident_per_connection(s, sample, args.rss_pairs) for s in (PER_CONNECTION[0], PER_CONNECTION[3])]
    print("  measured memory", file=sys.stderr, flush=True)

    chat_row, movement_row = per_kind[0], per_kind[1]
    default = SINGLE[1].name
    sizes = {
        "chat raw": chat_row["raw_wire_bytes"],
        "chat deflated": chat_row["deflate"][default]["wire_bytes"],
        "movement raw": movement_row["raw_wire_bytes"],
        "movement deflated": movement_row["deflate"][default]["wire_bytes"],
        "history raw": per_kind[-1]["raw_wire_bytes"],
        "history deflated": per_kind[-1]["deflate"][default]["wire_bytes"],
    }
    send = send_cost(sizes, args.sockets, args.send_rounds, repeat)
    print("  measured sends", file=sys.stderr, flush=True)

    return {
        "workload": "compression",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "repeat": repeat,
        "per_kind": per_kind,
        "context": context,
        "memory_tracemalloc": memory,
        "memory_rss": resident,
        "send_cpu_us": {"sizes": sizes, "us_per_send": send},
        "published": published_fanout(),
    }


def models(result: dict[str, Any]) -> dict[str, Any]:
    """The two deployment models, applied to the published fan-out figures."""
    published = result["published"]
    base = published["server_cpu_us_per_delivery"]
    chat = result["per_kind"][0]
    per_instance = {}
    for setting, cost in ((n, d["us_fresh_compressor"]) for n, d in chat["deflate"].items()):
        per_instance[setting] = {
            str(members): {
                "added_us_per_delivery": round(cost / members, 3),
                "fanout_cost_pct": round(100 * (cost / members) / base, 2),
            }
            for members in (1, 5, 49, published["local_members_per_instance"])
        }
    per_connection = {}
    for row in result["context"]:
        if row["stream"] != "chat (global)":
            continue
        added = row["us_per_frame_context"]
        per_connection[row["setting"]] = {
            "added_us_per_delivery": added,
            "deliveries_per_core_second_before": round(1e6 / base),
            "deliveries_per_core_second_after": round(1e6 / (base + added)),
            "throughput_lost_pct": round(100 * added / (base + added), 1),
        }
    rate = published["deliveries_per_second"]
    chat_context = next(r for r in result["context"] if r["stream"] == "chat (global)" and r["setting"] == "L6 w15 m8")
    egress = {
        "deliveries_per_second": rate,
        "raw": round(rate * chat["raw_wire_bytes"] / 1e6, 1),
        "a_per_instance_L6": round(rate * chat["deflate"]["L6 w15 m8"]["wire_bytes"] / 1e6, 1),
        "b_per_connection_L6": round(rate * wire_size(chat_context["context_bytes"]) / 1e6, 1),
    }
    return {
        "base_us_per_delivery": base,
        "chat_egress_mb_per_second": egress,
        "a_per_instance_no_context": per_instance,
        "b_per_connection_context": per_connection,
    }


def table(result: dict[str, Any]) -> str:
    names = [s.name for s in SINGLE]
    lines = [
        "Per frame, compressed alone (server_no_context_takeover): mean payload bytes (saved)",
        "",
        "| frame | raw B | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in result["per_kind"]:
        cells = [f"{row['deflate'][n]['bytes']} ({row['deflate'][n]['saved_pct']} %)" for n in names]
        lines.append(f"| {row['kind']} | {row['raw_bytes']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU µs per compression with a fresh compressor (and today's frame build, PreparedMessage)",
        "",
        "| frame | frame build | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in result["per_kind"]:
        cells = [str(row["deflate"][n]["us_fresh_compressor"]) for n in names]
        lines.append(f"| {row['kind']} | {row['frame_build_us']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Consecutive frames through one compressor (context takeover), mean payload bytes per frame",
        "",
        "| stream | setting | raw B | alone B (saved) | in context B (saved) | µs per frame in context |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["context"]:
        lines.append(
            f"| {row['stream']} ({row['frames']}) | {row['setting']} | {row['raw_bytes']} "
            f"| {row['alone_bytes']} ({row['saved_alone_pct']} %) "
            f"| {row['context_bytes']} ({row['saved_context_pct']} %) "
            f"| {row['us_per_frame_context']} |"
        )
    lines += [
        "",
        "Memory per connection (zlib state, tracemalloc; RSS for many pairs after 200 chat frames each way)",
        "",
        "| setting | compressor KiB | decompressor KiB | together KiB |",
        "|---|---|---|---|",
    ]
    for row in result["memory_tracemalloc"]:
        together = row["compressor_bytes"] + row["decompressor_bytes"]
        lines.append(
            f"| {row['setting']} | {row['compressor_bytes'] / 1024:.1f} | {row['decompressor_bytes'] / 1024:.1f} "
            f"| {together / 1024:.1f} |"
        )
    for row in result["memory_rss"]:
        lines.append(f"| {row['setting']} (RSS, {row['pairs']} pairs) | | | {row['rss_bytes_per_pair'] / 1024:.1f} |")
    send = result["send_cpu_us"]
    lines += [
        "",
        "Sender CPU per socket.send on loopback TCP (µs): "
        + ", ".join(f"{name} {send['sizes'][name]} B: {us}" for name, us in send["us_per_send"].items()),
        "",
    ]
    m = result["models"]
    lines.append(f"Published fan-out: {m['base_us_per_delivery']} µs server CPU per delivery (1,000 × 100 msg/s).")
    lines.append(
        "(a) per instance, no context takeover: added µs per delivery (share of today's cost) by local members"
    )
    for setting, by_members in m["a_per_instance_no_context"].items():
        cells = ", ".join(
            f"{members}: {v['added_us_per_delivery']} ({v['fanout_cost_pct']} %)" for members, v in by_members.items()
        )
        lines.append(f"  {setting}: {cells}")
    egress = m["chat_egress_mb_per_second"]
    lines.append(
        f"Chat egress at {egress['deliveries_per_second']:,} deliveries/s: {egress['raw']} MB/s raw, "
        f"{egress['a_per_instance_L6']} (a), {egress['b_per_connection_L6']} (b)"
    )
    lines.append("(b) per connection, context takeover (chat): added µs per delivery, deliveries per core-second")
    for setting, v in m["b_per_connection_context"].items():
        lines.append(
            f"  {setting}: +{v['added_us_per_delivery']} µs, {v['deliveries_per_core_second_before']:,} → "
            f"{v['deliveries_per_core_second_after']:,} (−{v['throughput_lost_pct']} %)"
        )
    return "\n".join(lines) + "\n"


def write_result(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"compression-{stamp}.json"
    text = json.dumps(result, indent=2)
    for target in (path, RESULTS / "compression-latest.json"):
        target.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per figure (the median is kept)")
    parser.add_argument("--frames", type=int, default=2000, help="compressions per timing run")
    parser.add_argument("--sequence", type=int, default=200, help="consecutive frames per stream")
    parser.add_argument("--memory-objects", type=int, default=50, help="compressors kept per tracemalloc figure")
    parser.add_argument("--rss-pairs", type=int, default=300, help="compressor+decompressor pairs per RSS figure")
    parser.add_argument("--sockets", type=int, default=200, help="loopback connections for the send cost")
    parser.add_argument("--send-rounds", type=int, default=100, help="sends per socket per timing run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller samples (a look, not a result)")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.memory_objects, args.rss_pairs, args.send_rounds = 300, 10, 50, 20

    from bench.run import configure_django

    configure_django("sqlite://:memory:")
    result = measure(args)
    result["models"] = models(result)
    path = write_result(result)
    print(table(result))
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
