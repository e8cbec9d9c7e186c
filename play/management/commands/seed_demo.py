"""`manage.py seed_demo [--force]`: demo players (shared password), a guild and a party.

Idempotent, and run by `scripts/serve` on every start. The Demo Guild and Demo Party are open, so
anyone may join them without an invitation. The demo password is public (it is in
the README), so the players are created only on a development server (DEBUG) or with --force;
otherwise the command says so and exits 0, so a server start never fails because of it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from play import services


class Command(BaseCommand):
    help = "Create the demo players (alice, bob, carol, dave), the Demo Guild and the Demo Party."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Create them even with DEBUG off (they share a password published in the README).",
        )

    def handle(self, *args, force: bool, **options) -> None:
        if not (settings.DEBUG or force):
            self.stderr.write(
                "seed_demo: skipped, DEBUG is off. The demo players share a published password; "
                "pass --force to create them anyway."
            )
            return
        report = services.demo_seed()
        if report.created:
            self.stdout.write(f"Demo players created: {', '.join(report.created)}")
        if report.existing:
            self.stdout.write(f"Demo players already there (left as they are): {', '.join(report.existing)}")
        for refusal in report.not_joined:
            self.stdout.write(f"Not added to the demo guild or party: {refusal}")
        self.stdout.write(
            f"Guild: {report.guild}; party: {report.party}. "
            f"New demo players log in with the password {services.DEMO_PASSWORD!r} at /play/."
        )
