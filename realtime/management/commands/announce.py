"""`manage.py announce "text" [--level info|warning|critical]`: a system announcement to /ws/game.

Reaches every /ws/game connection on every instance, anonymous ones included. With Redis the
command publishes through it; in the embedded default (no Redis) it goes through the database
outbox and the server delivers it within WEBSOCKET_OUTBOX_POLL_INTERVAL seconds.
Exit status: 0 sent, 1 the channel layer did not take it, 2 bad arguments.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime.features import game, operations
from realtime.protocol.game import ANNOUNCEMENT_LEVELS


class Command(BaseCommand):
    help = "Send a system_announcement to every /ws/game connection on every instance."

    def add_arguments(self, parser) -> None:
        parser.add_argument("message", help="The announcement text (at most 1000 characters).")
        parser.add_argument("--level", choices=ANNOUNCEMENT_LEVELS, default="info", help="Severity shown to players.")
        parser.add_argument(
            "--timeout",
            type=float,
            default=operations.OPERATION_TIMEOUT,
            help="Seconds to wait for the channel layer (default %(default)s).",
        )

    def handle(self, *args, message: str, level: str, timeout: float, **options) -> None:
        try:
            reached = operations.run_bounded(game.announcement_send, timeout, message=message, level=level)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        except TimeoutError as exc:
            raise CommandError(f"The channel layer did not answer within {timeout:g} s; nothing was sent.") from exc
        if not reached:
            raise CommandError("The channel layer refused the announcement; nothing was sent.")
        if settings.REDIS is None:
            self.stdout.write(
                f"Queued a {level} announcement; the server delivers it to every /ws/game connection "
                f"within {settings.WEBSOCKET_OUTBOX_POLL_INTERVAL:g} s (embedded mode, through the database)."
            )
        else:
            self.stdout.write(f"Sent a {level} announcement to every /ws/game connection on every instance.")
