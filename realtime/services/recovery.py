"""Recovery from outages: a watchdog on every instance that notices Redis or the database
failing and coming back (logged once each, see `realtime/outages.py`), and what an instance
re-establishes as soon as Redis answers again instead of waiting for the next cleanup:

- its presence (Redis may have restarted empty; closes and opens it missed are reconciled);
- its players' world positions;
- personal events stored for its users while presence could not be read (they were connected,
  but the sender's instance could not know): handed to their open connections.

Live broadcasts lost during the outage stay lost (at most once, docs/reliability.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from realtime.housekeeping import presence_reconcile
from realtime.outages import DATABASE, REDIS, layer_service, outages

if TYPE_CHECKING:
    from realtime.runtime import Runtime

logger = logging.getLogger(__name__)

# Probing costs one PING, one PUBLISH and one `SELECT 1` per instance per run.
WATCHDOG_INTERVAL = 1.0
# More patient than the health check (0.8 s): a busy instance answers late, and calling that
# an outage would stop the slow broadcasts it is still sending (events._group_send).
PROBE_TIMEOUT = 3.0


class Watchdog:
    """Probes the backing services; reports outages and recoveries, then recovers.

    Other code reports failures as it meets them (`outages.failed`); only the watchdog declares
    Redis back, so the recovery below runs once per outage, however it was noticed.
    """

    def __init__(self, runtime: Runtime, *, watch_redis: bool | None = None) -> None:
        from django.conf import settings

        self.runtime = runtime
        self.watch_redis = settings.REDIS is not None if watch_redis is None else watch_redis
        self.redis_ok = True
        self.database_ok = True

    async def run(self) -> None:
        from realtime.views import health

        checks = await health.run_checks(PROBE_TIMEOUT)
        failing = {name: check.get("error") for name, check in checks.items() if check["status"] != "ok"}
        if self.watch_redis:
            layer, state = failing.get("channel_layer"), failing.get("shared_state")
            if state or (layer and layer != "timeout"):
                self.redis_ok = False
                redis_failing = {name: error for name, error in failing.items() if name != "database"}
                outages.failed(REDIS, ", ".join(f"{name}={error}" for name, error in redis_failing.items()))
            elif layer:
                # Redis answers but our broadcasts come back slowly: this instance is busy, or
                # its subscription is being renewed. Not an outage; health says 503 meanwhile.
                pass
            elif not self.redis_ok or outages.down(REDIS):
                outages.succeeded(REDIS)
                self.redis_ok = True
                await redis_recovered(self.runtime)
        elif "channel_layer" not in failing:
            outages.succeeded(layer_service())
        # The probe only reads. It declares the end of outages it saw itself; when writes fail
        # while reads work (SQLite locked by another process), the next successful registry
        # write declares it (housekeeping).
        if "database" in failing:
            self.database_ok = False
            outages.failed(DATABASE, f"database={failing['database']}")
        elif not self.database_ok:
            self.database_ok = True
            outages.succeeded(DATABASE)


async def redis_recovered(runtime: Runtime) -> None:
    from realtime.services import world

    await presence_reconcile(runtime)
    await world.players_reassert(runtime)
    await pending_hand_over(runtime)


def _users_with_pending(user_ids: list[str]) -> list[str]:
    User = get_user_model()
    waiting = User.objects.filter(pk__in=user_ids, has_pending_deliveries=True)
    return [str(pk) for pk in waiting.values_list("pk", flat=True)]


async def pending_hand_over(runtime: Runtime) -> int:
    """Deliver stored personal events to this instance's open connections of their users."""
    hub = runtime.hub
    user_ids = [user_id for user_id in hub.by_user if user_id]
    if not user_ids:
        return 0
    delivered = 0
    for user_id in await database_sync_to_async(_users_with_pending)(user_ids):
        for conn in list(hub.user_connections(user_id)):
            if not conn.closing:
                delivered += await conn.consumer.deliver_pending()
    if delivered:
        logger.info("handed over %d personal events kept during the outage", delivered)
    return delivered


def install(runtime: Runtime) -> None:
    runtime.every("watchdog", lambda: WATCHDOG_INTERVAL, Watchdog(runtime).run)
