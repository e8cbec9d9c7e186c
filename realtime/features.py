"""Wires feature services into a runtime: hub control handlers, filters and periodic jobs.

Each feature adds one line here; the services themselves know nothing of the hub's internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from realtime.runtime import Runtime


def install_features(runtime: Runtime) -> None:
    from realtime.services import combat, moderation, operations, presence, recovery, world

    hub = runtime.hub
    # Instructions sent with events.send_control(...) reach these, per local connection.
    hub.register_control("close", lambda conn, message: conn.consumer.on_control_close(message))
    hub.register_control("membership", lambda conn, message: conn.consumer.on_control_membership(message))
    hub.register_control("deliver_pending", lambda conn, message: conn.consumer.on_control_deliver_pending(message))
    hub.register_control("refresh_user", lambda conn, message: conn.consumer.on_control_refresh_user(message))
    hub.register_filter("not_in_guild", presence.not_in_guild_filter)
    moderation.install(runtime)
    combat.install(runtime)
    operations.install(runtime)
    world.install(runtime)
    recovery.install(runtime)
