"""`manage.py ws_stats [--json]`: the cluster at a glance — instances, liveness, connections.

Read from the registry (every instance writes its connections there every few seconds).
Exit status: 0, or 1 when the database cannot be read.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from realtime.features import monitoring


class Command(BaseCommand):
    help = "Show instances, their liveness and connections per endpoint across the cluster."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="Machine-readable output.")

    def handle(self, *args, as_json: bool = False, **options) -> None:
        try:
            overview = monitoring.cluster_overview()
        except Exception as exc:
            raise CommandError(f"Cannot read the registry: {type(exc).__name__}: {exc}") from exc
        if as_json:
            self.stdout.write(_as_json(overview))
        else:
            self.stdout.write(_as_table(overview))


def _as_json(overview: monitoring.ClusterOverview) -> str:
    return json.dumps(
        {
            "total": overview.total,
            "by_endpoint": overview.by_endpoint,
            "instances": [
                {
                    "id": row.id,
                    "state": row.state,
                    "last_seen": row.last_seen.isoformat() if row.last_seen else None,
                    "connections": row.connections,
                    "by_endpoint": row.by_endpoint,
                }
                for row in overview.instances
            ],
        },
        indent=2,
    )


def _as_table(overview: monitoring.ClusterOverview) -> str:
    endpoints = list(monitoring.ENDPOINTS)
    header = ["INSTANCE", "STATE", "LAST SEEN", *[f"/ws/{e}" for e in endpoints], "TOTAL"]
    rows = []
    for row in overview.instances:
        seen = row.seen_seconds_ago
        rows.append(
            [
                row.id,
                row.state,
                f"{seen:.1f} s ago" if seen is not None else "never",
                *[str(row.by_endpoint.get(e, 0)) for e in endpoints],
                str(row.connections),
            ]
        )
    footer = ["CLUSTER (live)", "", "", *[str(overview.by_endpoint.get(e, 0)) for e in endpoints], str(overview.total)]
    widths = [max(len(line[i]) for line in [header, *rows, footer]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        cells = [cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(line)]
        return "  ".join(cells).rstrip()

    live = len(overview.live)
    dead = len(overview.instances) - live
    lines = [f"{len(overview.instances)} instance(s): {live} live or draining, {dead} dead", "", render(header)]
    lines += [render(line) for line in rows] or ["(no instance has registered)"]
    lines += [render(footer)]
    return "\n".join(lines)
