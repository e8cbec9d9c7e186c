"""`manage.py run_demo_bots [--count N] [--url URL]`: bot players that make the demo world live.

The bots connect to a running server over real WebSockets, walk around the zone's spawn point,
chat, change their status and now and then fight a goblin. The command creates the bot players
in this project's database (no usable password) and signs their access tokens with this
project's SECRET_KEY, so it must share both with the server it connects to, as it does when
both run from the same checkout (`scripts/serve`). Ctrl-C stops the bots.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rest_framework_simplejwt.tokens import AccessToken

from play import services
from realtime.features.world.zones import ZoneSpec
from realtime.models import Zone


def websocket_base(url: str) -> str:
    """`http://host:port` (or ws://, https://, wss://) → `ws://host:port`, without a path."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise CommandError(f"--url must look like http://host:port (got {url!r})")
    return f"{scheme}://{parts.netloc}"


class Command(BaseCommand):
    help = "Connect demo bot players to a running server: they walk, chat, change status and fight."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=5, help="How many bots (default %(default)s).")
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The server to connect to (default %(default)s)."
        )
        parser.add_argument("--zone", default="starter_town", help="Where the bots walk (default %(default)s).")
        parser.add_argument(
            "--duration", type=float, default=0, help="Stop after this many seconds (default: run until Ctrl-C)."
        )
        parser.add_argument(
            "--chat-interval", type=float, default=25.0, help="Mean seconds between a bot's chat lines; 0: silent."
        )
        parser.add_argument(
            "--fight-interval", type=float, default=120.0, help="Mean seconds between a bot's fights; 0: none."
        )
        parser.add_argument(
            "--status-interval", type=float, default=45.0, help="Mean seconds between status changes; 0: never."
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for a repeatable demo.")
        parser.add_argument("--force", action="store_true", help="Create the bot players even with DEBUG off.")

    def handle(self, *args, **options) -> None:
        try:
            from play import bots  # noqa: PLC0415 - `websockets` is optional: a clear error, not an import failure
        except ImportError as exc:  # `websockets` is a development requirement, not in the image
            raise CommandError(
                f"The bots need the `websockets` package ({exc}); install requirements.txt in full."
            ) from exc
        if not (settings.DEBUG or options["force"]):
            raise CommandError("Demo bots are for development servers: set DEBUG=true or pass --force.")
        for name in ("duration", "chat_interval", "fight_interval", "status_interval"):
            if options[name] < 0:
                raise CommandError(f"--{name.replace('_', '-')} cannot be negative.")
        ws_url = websocket_base(options["url"])
        zone = Zone.objects.filter(name=options["zone"]).first()
        if zone is None:
            raise CommandError(f"No zone {options['zone']!r}; see the Zones page of the admin.")
        try:
            users = services.demo_bots_ensure(count=options["count"])
        except ValueError as exc:
            raise CommandError(f"--count: {exc}") from exc

        identities = [bots.BotIdentity(str(u.pk), u.username, u.guild_id is not None) for u in users]
        by_id = {str(u.pk): u for u in users}
        plan = bots.BotPlan(
            ws_url=ws_url,
            zone=ZoneSpec(zone.name, zone.min_x, zone.min_y, zone.max_x, zone.max_y, zone.spawn_x, zone.spawn_y),
            chat_interval=options["chat_interval"],
            status_interval=options["status_interval"],
            fight_interval=options["fight_interval"],
        )
        names = ", ".join(identity.username for identity in identities)
        self.stdout.write(f"Running {len(identities)} demo bots ({names}) against {ws_url}; Ctrl-C stops them.")
        self.stdout.flush()
        asyncio.run(
            self._run(
                bots,
                identities,
                plan=plan,
                token_for=lambda identity: str(AccessToken.for_user(by_id[identity.user_id])),
                duration=options["duration"],
                seed=options["seed"],
            )
        )
        self.stdout.write("Demo bots stopped.")

    async def _run(self, bots, identities, *, plan, token_for, duration: float, seed) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        if duration:
            loop.call_later(duration, stop.set)
        await bots.run_bots(identities, token_for=token_for, plan=plan, stop=stop, seed=seed)
