"""`manage.py cleanup_connections [--dry-run]`: remove what dead instances left behind.

An instance is dead when it has not refreshed its registry row for three cleanup intervals
(WEBSOCKET_CLEANUP_INTERVAL). Live instances already do this on their own every interval; the
command is for when none is running, or to see what is stale. It runs the same cleanup as a
surviving instance: presence (users left with no connection get `player_status` offline),
the features' own state (positions, combat), then the registry rows.
Exit status: 0 done (or nothing to do), 1 a backing service failed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime.boot import cleanup_runtime
from realtime.features import operations


class Command(BaseCommand):
    help = "Remove connection records, presence and feature state of dead instances."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only list what would be removed.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        try:
            found = operations.run_bounded(
                operations.dead_instances_cleanup, 120.0, runtime=cleanup_runtime(), dry_run=dry_run
            )
        except Exception as exc:
            raise CommandError(f"Cleanup failed: {type(exc).__name__}: {exc}") from exc
        limit = settings.WEBSOCKET_CLEANUP_INTERVAL * 3
        if not found:
            self.stdout.write(f"No dead instances (dead = no refresh for {limit:g} s).")
            return
        verb = "Would remove" if dry_run else "Removed"
        for dead in found:
            presence = "presence in server memory" if dead.presence is None else f"{dead.presence} presence entries"
            self.stdout.write(f"{verb} {dead.id}: {dead.connections} connection records, {presence} ({dead.reason})")
        summary = f"{verb} the records of {len(found)} dead instance(s)."
        self.stdout.write(summary if dry_run else self.style.SUCCESS(summary))
