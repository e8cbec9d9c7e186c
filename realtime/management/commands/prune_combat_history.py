"""`python manage.py prune_combat_history --days N`: delete fights that ended more than N days ago.

Run it from cron (e.g. daily), like `prune_chat_history`. A fight's participants and its full log
go with it; running fights are never touched. Players' combat stats are kept.
"""

from __future__ import annotations

import math

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.features.combat.referee import history_prune


class Command(BaseCommand):
    help = "Delete fights that ended more than --days N ago, with their log (running fights are kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, required=True, help="Keep fights that ended fewer than this many days ago."
        )

    def handle(self, *args, days: float, **options) -> None:
        if not math.isfinite(days) or days < 0:
            # returncode 2, like the argument errors argparse itself reports.
            raise CommandError("--days must be a number of days, 0 or more.", returncode=2)
        deleted = history_prune(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} fight{'s' if deleted != 1 else ''} that ended over {days:g} days ago.")
