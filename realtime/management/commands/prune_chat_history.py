"""`python manage.py prune_chat_history --days N`: delete chat messages older than N days.

Run it from cron (e.g. daily). The moderation log is kept; deleted and visible messages alike go.
"""

from __future__ import annotations

import math

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.features.chat import chat_history_prune


class Command(BaseCommand):
    help = "Delete chat messages older than --days N (the moderation log is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=float, required=True, help="Keep messages newer than this many days (e.g. 30; 0.5 works)."
        )

    def handle(self, *args, days: float, **options) -> None:
        if not math.isfinite(days) or days < 0:
            # returncode 2, like the argument errors argparse itself reports.
            raise CommandError("--days must be a number of days, 0 or more.", returncode=2)
        deleted = chat_history_prune(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} chat message{'s' if deleted != 1 else ''} older than {days:g} days.")
