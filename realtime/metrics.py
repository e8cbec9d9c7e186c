"""WebSocket metrics of this instance, exported to Prometheus and read back for the JSON view.

Labels are low-cardinality only: endpoint, message type, error or close code — never user ids.
Unknown client types are counted under `other` so a hostile client cannot mint label values.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from realtime.protocol import PROTOCOL_VERSION
from rpgrealtime import __version__

STARTED_AT = time.time()

BUILD_INFO = Gauge(
    "rpgrealtime_build_info", "The running release and wire protocol (always 1)", ["version", "protocol"]
)
BUILD_INFO.labels(__version__, PROTOCOL_VERSION).set(1)

CONNECTIONS = Gauge("rpgrealtime_ws_connections", "Open WebSocket connections on this instance", ["endpoint"])
CONNECTS = Counter("rpgrealtime_ws_connects_total", "Accepted WebSocket connections", ["endpoint"])
FRAMES_IN = Counter("rpgrealtime_ws_frames_in_total", "Client frames received", ["endpoint", "type"])
FRAMES_OUT = Counter("rpgrealtime_ws_frames_out_total", "Frames sent to clients", ["endpoint", "type"])
ERRORS = Counter("rpgrealtime_ws_errors_total", "Error frames sent", ["endpoint", "code"])
AUTH_FAILURES = Counter("rpgrealtime_ws_auth_failures_total", "Refused authentications", ["endpoint", "code"])
# `limit`: connection (WEBSOCKET_RATE_LIMIT), chat (CHAT_RATE_LIMIT), movement (WORLD_MOVE_RATE_LIMIT).
RATE_LIMITED = Counter("rpgrealtime_ws_rate_limited_total", "Frames refused by a rate limit", ["endpoint", "limit"])
CLOSES = Counter("rpgrealtime_ws_closes_total", "Connections closed by the server", ["endpoint", "code"])
BROADCASTS = Counter("rpgrealtime_ws_broadcasts_total", "Broadcasts published", ["kind"])
BROADCAST_FAILURES = Counter(
    "rpgrealtime_ws_broadcast_failures_total", "Broadcasts the channel layer refused (e.g. Redis down)"
)
BROADCAST_LATENCY = Histogram(
    "rpgrealtime_ws_broadcast_latency_seconds",
    "From publish on any instance to hand-off to the local sockets",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SLOW_CONSUMERS = Counter("rpgrealtime_ws_slow_consumers_total", "Connections closed for not reading")
HOUSEKEEPING_SECONDS = Histogram(
    "rpgrealtime_housekeeping_seconds",
    "How long one run of a periodic job took (heartbeat pass, cleanup, registry flush, revalidation, ...)",
    ["job"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Set once at start (realtime/gc_tuning.py), so an operator can see GC_THRESHOLD took effect.
GC_THRESHOLD = Gauge("rpgrealtime_gc_threshold", "The garbage collector's threshold per generation", ["generation"])
GC_FROZEN_OBJECTS = Gauge("rpgrealtime_gc_frozen_objects", "Objects frozen at start, which no collection visits")

_frames_in_children: dict[tuple[str, str], Counter] = {}
_frames_out_children: dict[tuple[str, str], Counter] = {}


def frame_in(endpoint: str, frame_type: str) -> None:
    key = (endpoint, frame_type)
    child = _frames_in_children.get(key)
    if child is None:
        child = _frames_in_children[key] = FRAMES_IN.labels(endpoint, frame_type)
    child.inc()


def frames_out(endpoint: str, frame_type: str, count: int = 1) -> None:
    key = (endpoint, frame_type)
    child = _frames_out_children.get(key)
    if child is None:
        child = _frames_out_children[key] = FRAMES_OUT.labels(endpoint, frame_type)
    child.inc(count)


def counter_values(counter: Counter) -> dict[str, float]:
    """{"label1/label2": value} for the JSON metrics view."""
    values: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = "/".join(sample.labels.values()) or "all"
                values[key] = values.get(key, 0.0) + sample.value
    return values


def nested_counter_values(counter: Counter) -> dict[str, dict[str, float]]:
    """{"endpoint": {"type": value}} for two-label counters."""
    nested: dict[str, dict[str, float]] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                first, second = list(sample.labels.values())[:2]
                nested.setdefault(first, {})[second] = sample.value
    return nested
