"""Settings that are each fine alone but contradict each other (`realtime.E010`–`W015`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from realtime.checks.values import TAG, usable_number

# daphne's own limit as the image and scripts/serve start it (--websocket-max-message-size).
DAPHNE_MAX_MESSAGE_BYTES = 1 << 20


@register(TAG)
def check_relations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Settings that are each fine alone but contradict each other."""
    return list(_relations())


def _relations() -> Iterator[CheckMessage]:
    heartbeat = usable_number("WEBSOCKET_HEARTBEAT_INTERVAL")
    timeout = usable_number("WEBSOCKET_CONNECTION_TIMEOUT")
    cleanup = usable_number("WEBSOCKET_CLEANUP_INTERVAL")
    flush = usable_number("WEBSOCKET_REGISTRY_FLUSH_INTERVAL")
    if heartbeat is not None and timeout is not None:
        if heartbeat >= timeout:
            yield Error(
                f"WEBSOCKET_HEARTBEAT_INTERVAL ({heartbeat:g} s) must be shorter than WEBSOCKET_CONNECTION_TIMEOUT "
                f"({timeout:g} s): a client that only answers the server's pings would be closed as silent (4408).",
                hint="Keep the timeout at several heartbeat intervals, e.g. 30 and 120 (the defaults).",
                id="realtime.E010",
            )
        elif 2 * heartbeat > timeout:
            yield Warning(
                f"WEBSOCKET_CONNECTION_TIMEOUT ({timeout:g} s) is less than twice WEBSOCKET_HEARTBEAT_INTERVAL "
                f"({heartbeat:g} s): one late pong closes a live connection (4408).",
                hint="Keep the timeout at several heartbeat intervals, e.g. 30 and 120 (the defaults).",
                id="realtime.W010",
            )
    if flush is not None and cleanup is not None and flush > cleanup:
        yield Error(
            f"WEBSOCKET_REGISTRY_FLUSH_INTERVAL ({flush:g} s) must not exceed WEBSOCKET_CLEANUP_INTERVAL "
            f"({cleanup:g} s): new and closed connections would reach the registry (admin, metrics, ws_stats, "
            "cluster counts) later than the instance's own liveness refresh.",
            hint="Flush more often than the cleanup runs, e.g. 2 and 60 (the defaults).",
            id="realtime.E011",
        )
    if cleanup is not None and timeout is not None and cleanup > timeout:
        yield Warning(
            f"WEBSOCKET_CLEANUP_INTERVAL ({cleanup:g} s) exceeds WEBSOCKET_CONNECTION_TIMEOUT ({timeout:g} s): "
            f"the players of an instance that died stay online for three cleanup intervals ({3 * cleanup:g} s), "
            "far longer than a silent connection is kept.",
            hint="Keep the cleanup interval at most the connection timeout, e.g. 60 and 120 (the defaults).",
            id="realtime.W011",
        )
    step = usable_number("WORLD_MAX_STEP")
    radius = usable_number("WORLD_NEARBY_RADIUS")
    if step is not None and radius is not None and step > radius:
        yield Warning(
            f"WORLD_MAX_STEP ({step:g}) exceeds WORLD_NEARBY_RADIUS ({radius:g}): one move can take a player "
            "from out of a watcher's sight to beside it, unseen on the way.",
            hint="Keep WORLD_MAX_STEP at most WORLD_NEARBY_RADIUS, e.g. 50 and 100 (the defaults).",
            id="realtime.W012",
        )
    max_message = usable_number("WEBSOCKET_MAX_MESSAGE_BYTES")
    send_buffer = usable_number("WEBSOCKET_SEND_BUFFER_BYTES")
    if max_message is not None and max_message > DAPHNE_MAX_MESSAGE_BYTES:
        yield Warning(
            f"WEBSOCKET_MAX_MESSAGE_BYTES ({max_message:g}) exceeds the 1 MiB that the image and scripts/serve "
            "let daphne accept: bigger frames are closed with 1009 before the application sees them.",
            hint="Keep WEBSOCKET_MAX_MESSAGE_BYTES at most 1048576, or raise daphne's --websocket-max-message-size.",
            id="realtime.W013",
        )
    if max_message is not None and send_buffer is not None and send_buffer < max_message:
        yield Warning(
            f"WEBSOCKET_SEND_BUFFER_BYTES ({send_buffer:g}) is smaller than WEBSOCKET_MAX_MESSAGE_BYTES "
            f"({max_message:g}): a single large event would close its recipient as a slow consumer (4413).",
            hint="Keep the send buffer several times the largest message, e.g. 1048576 and 65536 (the defaults).",
            id="realtime.W014",
        )
    access = usable_number("JWT_ACCESS_TOKEN_LIFETIME")
    refresh = usable_number("JWT_REFRESH_TOKEN_LIFETIME")
    if access is not None and refresh is not None and refresh < access:
        yield Warning(
            f"JWT_REFRESH_TOKEN_LIFETIME ({refresh:g} s) is shorter than JWT_ACCESS_TOKEN_LIFETIME ({access:g} s): "
            "clients must log in again before their access token could ever be refreshed.",
            hint="Make refresh tokens outlive access tokens, e.g. 86400 and 900 (the defaults).",
            id="realtime.W015",
        )
