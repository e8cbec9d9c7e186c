"""Read-only views of the cluster for operators: metrics JSON, cluster overview (selectors).

Values of this instance come from the Prometheus objects in `realtime/metrics.py`, so
`/metrics` and the JSON view can never disagree; cluster values come from the registry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from realtime import metrics
from realtime.models import Connection, Instance
from realtime.protocol import ENDPOINTS
from realtime.registry import DEAD_AFTER_INTERVALS, cluster_counts


def _by_endpoint(counts: Mapping[str, float]) -> dict[str, int]:
    """Every endpoint present (zero when idle), values as integers."""
    merged = dict.fromkeys(ENDPOINTS, 0)
    for endpoint, value in counts.items():
        merged[endpoint] = int(value)
    return merged


def _gauge_values(gauge: Any) -> dict[str, float]:
    values: dict[str, float] = {}
    for metric in gauge.collect():
        for sample in metric.samples:
            values["/".join(sample.labels.values())] = sample.value
    return values


def _ints(nested: dict[str, dict[str, float]]) -> dict[str, dict[str, int]]:
    return {outer: {inner: int(v) for inner, v in values.items()} for outer, values in nested.items()}


def _histogram_summary(histogram: Any) -> dict[str, Any]:
    count = total = 0.0
    buckets: dict[str, int] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_bucket"):
                buckets[sample.labels["le"]] = int(sample.value)
    return {
        "count": int(count),
        "mean_ms": round(total / count * 1000, 3) if count else None,
        "buckets": buckets,  # cumulative counts per upper bound in seconds, as in Prometheus
    }


def instance_connections() -> dict[str, Any]:
    by_endpoint = _by_endpoint(_gauge_values(metrics.CONNECTIONS))
    return {"total": sum(by_endpoint.values()), "by_endpoint": by_endpoint}


def metrics_snapshot() -> dict[str, Any]:
    """The JSON of GET /api/v1/websocket/metrics (docs/protocol.md §8)."""
    cluster = cluster_counts(settings.WEBSOCKET_CLEANUP_INTERVAL)
    errors = _ints(metrics.nested_counter_values(metrics.ERRORS))
    auth_failures = _ints(metrics.nested_counter_values(metrics.AUTH_FAILURES))
    by_code: dict[str, int] = {}
    for codes in auth_failures.values():
        for code, n in codes.items():
            by_code[code] = by_code.get(code, 0) + n
    rate_limited = _ints(metrics.nested_counter_values(metrics.RATE_LIMITED))
    return {
        "instance": {
            "id": settings.INSTANCE_ID,
            "uptime_seconds": round(time.time() - metrics.STARTED_AT, 1),
        },
        "connections": {
            "instance": instance_connections(),
            "cluster": {"total": cluster["total"], "by_endpoint": _by_endpoint(cluster["by_endpoint"])},
        },
        "frames": {
            "in": _ints(metrics.nested_counter_values(metrics.FRAMES_IN)),
            "out": _ints(metrics.nested_counter_values(metrics.FRAMES_OUT)),
        },
        "errors": errors,
        "errors_total": sum(sum(codes.values()) for codes in errors.values()),
        "auth_failures": sum(by_code.values()),
        "auth_failures_by_code": by_code,
        "rate_limited": rate_limited,
        "rate_limited_total": sum(sum(limits.values()) for limits in rate_limited.values()),
        "closes": _ints(metrics.nested_counter_values(metrics.CLOSES)),
        "connects": {k: int(v) for k, v in metrics.counter_values(metrics.CONNECTS).items()},
        "broadcasts": {k: int(v) for k, v in metrics.counter_values(metrics.BROADCASTS).items()},
        "broadcast_failures": int(sum(metrics.counter_values(metrics.BROADCAST_FAILURES).values())),
        "broadcast_latency": _histogram_summary(metrics.BROADCAST_LATENCY),
        "slow_consumers": int(sum(metrics.counter_values(metrics.SLOW_CONSUMERS).values())),
        "instances": [
            {
                "id": row["id"],
                "connections": row["connections"],
                "by_endpoint": _by_endpoint(row["by_endpoint"]),
                "last_seen": row["last_seen"].isoformat(),
                "started_at": row["started_at"].isoformat(),
                "draining": row["draining"],
            }
            for row in cluster["instances"]
        ],
    }


# --- cluster overview (admin dashboard, ws_stats) -------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceRow:
    id: str
    host: str
    pid: int | None
    state: str  # "live", "draining" or "dead"
    last_seen: datetime | None
    started_at: datetime | None
    by_endpoint: dict[str, int]

    @property
    def connections(self) -> int:
        return sum(self.by_endpoint.values())

    @property
    def seen_seconds_ago(self) -> float | None:
        return (timezone.now() - self.last_seen).total_seconds() if self.last_seen else None


@dataclass(frozen=True, slots=True)
class ClusterOverview:
    instances: list[InstanceRow]
    by_endpoint: dict[str, int] = field(default_factory=dict)  # live instances only

    @property
    def total(self) -> int:
        return sum(self.by_endpoint.values())

    @property
    def live(self) -> list[InstanceRow]:
        return [row for row in self.instances if row.state != "dead"]


def liveness_cutoff() -> datetime:
    return timezone.now() - timedelta(seconds=settings.WEBSOCKET_CLEANUP_INTERVAL * DEAD_AFTER_INTERVALS)


def instance_state(instance: Instance, cutoff: datetime | None = None) -> str:
    """ "live", "draining" (shutting down) or "dead" (stopped refreshing its row)."""
    if instance.last_seen < (cutoff or liveness_cutoff()):
        return "dead"
    return "draining" if instance.draining else "live"


def cluster_overview() -> ClusterOverview:
    """Every instance the registry knows (dead ones too, until cleaned up), with its connections.

    Connection rows whose instance has no row at all are listed as a dead instance without host.
    """
    cutoff = liveness_cutoff()
    counts: dict[str, dict[str, int]] = {}
    for instance_id, endpoint, n in (
        Connection.objects.values_list("instance_id", "endpoint").annotate(n=Count("id")).order_by()
    ):
        counts.setdefault(instance_id, {})[endpoint] = n
    rows = []
    for instance in Instance.objects.order_by("id"):
        rows.append(
            InstanceRow(
                id=instance.id,
                host=instance.host,
                pid=instance.pid,
                state=instance_state(instance, cutoff),
                last_seen=instance.last_seen,
                started_at=instance.started_at,
                by_endpoint=_by_endpoint(counts.pop(instance.id, {})),
            )
        )
    for instance_id, by_endpoint in sorted(counts.items()):
        rows.append(InstanceRow(instance_id, "", None, "dead", None, None, _by_endpoint(by_endpoint)))
    total = dict.fromkeys(ENDPOINTS, 0)
    for row in rows:
        if row.state != "dead":
            for endpoint, n in row.by_endpoint.items():
                total[endpoint] = total.get(endpoint, 0) + n
    return ClusterOverview(rows, total)
