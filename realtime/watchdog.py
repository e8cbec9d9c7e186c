"""The outage watchdog: notices Redis or the database failing and coming back (logged once each,
see `realtime/outages.py`), and runs the runtime's "Redis recovered" hooks once per outage.

What an instance re-establishes when Redis answers again (presence, world positions, personal
events kept meanwhile) is each feature's own hook; live broadcasts lost during the outage stay
lost (at most once, docs/reliability.md).
"""

from __future__ import annotations

from django.conf import settings

from realtime import health
from realtime.outages import DATABASE, REDIS, layer_service, outages
from realtime.runtime import Runtime

# Probing costs one PING, one PUBLISH per channel-layer server and one `SELECT 1` per instance per run.
WATCHDOG_INTERVAL = 1.0
# More patient than the health check (0.8 s): a busy instance answers late, and calling that
# an outage would stop the slow broadcasts it is still sending (outbound._group_send).
PROBE_TIMEOUT = 3.0


class Watchdog:
    """Probes the backing services; reports outages and recoveries, then recovers.

    Other code reports failures as it meets them (`outages.failed`); only the watchdog declares
    Redis back, so the recovery hooks run once per outage, however it was noticed.
    """

    def __init__(self, runtime: Runtime, *, watch_redis: bool | None = None) -> None:
        self.runtime = runtime
        self.watch_redis = settings.REDIS is not None if watch_redis is None else watch_redis
        self.redis_ok = True
        self.database_ok = True

    async def run(self) -> None:
        checks = await health.run_checks(hub=self.runtime.hub, store=self.runtime.store, timeout=PROBE_TIMEOUT)
        failing = {name: check.get("error") for name, check in checks.items() if check["status"] != "ok"}
        if self.watch_redis:
            layer, state = failing.get("channel_layer"), failing.get("shared_state")
            if state or (layer and layer != "timeout"):
                self.redis_ok = False
                redis_checks = {name: check for name, check in checks.items() if name != "database"}
                outages.failed(REDIS, health.describe_failures(redis_checks))
            elif layer:
                # Redis answers but our broadcasts come back slowly: this instance is busy, or
                # its subscription is being renewed. Not an outage; health says 503 meanwhile.
                pass
            elif not self.redis_ok or outages.down(REDIS):
                outages.succeeded(REDIS)
                self.redis_ok = True
                await self.runtime.redis_recovered()
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


def install(runtime: Runtime) -> None:
    runtime.every("watchdog", lambda: WATCHDOG_INTERVAL, Watchdog(runtime).run)
