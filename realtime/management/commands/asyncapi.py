"""`manage.py asyncapi [--check] [--output PATH]`: write docs/asyncapi.json from the code.

The endpoints come from the WebSocket routes, each one's client frames from its consumer's
handlers, the server frames from `realtime.protocol.events` (realtime/protocol/asyncapi.py).
`--check` writes nothing and fails when the file differs from what the code describes.
Exit status: 0 written or up to date, 1 out of date (or the code leaves a type undescribed).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime.protocol.asyncapi import DocumentError, EndpointFrames, build, render
from realtime.routing import websocket_urlpatterns

DEFAULT_OUTPUT = Path(settings.BASE_DIR) / "docs" / "asyncapi.json"


def routed_endpoints() -> list[EndpointFrames]:
    """Every routed consumer, with the schema of each client frame type its handlers take."""
    endpoints = []
    for route in websocket_urlpatterns:
        consumer = getattr(route.callback, "consumer_class", None)
        if consumer is None:
            continue  # the catch-all that refuses unknown paths
        handlers = consumer.handlers
        endpoints.append(
            EndpointFrames(
                name=consumer.endpoint,
                address=f"/{route.pattern}",
                client_frames={message_type: handler.schema for message_type, handler in handlers.items()},
            )
        )
    return endpoints


class Command(BaseCommand):
    help = "Write the protocol's AsyncAPI document (docs/asyncapi.json) from the code, or check it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--check", action="store_true", help="Fail if the file is not up to date; write nothing.")
        parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Where the document goes.")

    def handle(self, *args, check: bool, output: Path, **options) -> None:
        try:
            text = render(build(routed_endpoints()))
        except DocumentError as exc:
            raise CommandError(f"The code does not describe the protocol completely: {exc}") from exc
        if check:
            try:
                current = output.read_text(encoding="utf-8")
            except OSError:
                current = None
            if current != text:
                raise CommandError(f"{output} is out of date: run `python manage.py asyncapi` and commit it.")
            self.stdout.write(f"{output} is up to date.")
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror or exc}") from exc
        self.stdout.write(f"Wrote {output}.")
