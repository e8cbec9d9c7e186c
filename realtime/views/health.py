"""GET /api/v1/websocket/health: is this instance fit to take connections? For load balancers.

The checks themselves are in `realtime/health.py`; this view answers 200 or 503 and logs a
change of state once, not once per poll.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import JsonResponse
from django.views.decorators.http import require_safe

from realtime import health
from realtime.boot import ensure_runtime

logger = logging.getLogger(__name__)


@require_safe
async def health_check(request) -> JsonResponse:
    runtime = await ensure_runtime()
    checks = await health.run_checks(hub=runtime.hub, store=runtime.store)
    draining = runtime.hub.draining
    healthy = not draining and all(check["status"] == "ok" for check in checks.values())
    _log_change(healthy, checks, draining)
    response = JsonResponse(
        {"status": "healthy" if healthy else "unhealthy", "checks": checks, "draining": draining},
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    # A 503 here is an answer, not a server error: load balancers poll every few seconds, so
    # Django's per-response error log would flood during an outage. `_log_change` logs once.
    response._has_been_logged = True
    return response


_last_healthy: bool | None = None


def _log_change(healthy: bool, checks: dict[str, dict[str, Any]], draining: bool) -> None:
    global _last_healthy
    if healthy == _last_healthy:
        return
    _last_healthy = healthy
    if healthy:
        logger.info("health: healthy")
    else:
        logger.warning("health: unhealthy (%s)", "draining" if draining else health.describe_failures(checks))
