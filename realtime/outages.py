"""Outages of the backing services (Redis, the database), logged once when they start and once
when they end.

During an outage many code paths fail at once, each time they run: every broadcast, presence
change, registry flush and periodic job. Logging every failure would write thousands of lines a
minute and bury the one that matters. They report here instead, and the log says
`redis unavailable (ConnectionError: …)` once, then `redis available again after 7.3 s` once.
The watchdog (`realtime/services/recovery.py`) probes the services every second, so the end of
an outage is noticed even when nothing else touches the service.
"""

from __future__ import annotations

import logging
import time

import redis.exceptions
from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

REDIS = "redis"
DATABASE = "database"


def layer_service() -> str:
    """What the channel layer depends on: Redis, or nothing outside this process."""
    return REDIS if settings.REDIS is not None else "channel layer"


def service_of(exc: BaseException) -> str | None:
    """Which backing service an exception says is unreachable, if any (an IntegrityError is a
    bug or a race, not an outage)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return DATABASE
    if isinstance(exc, redis.exceptions.RedisError | TimeoutError | ConnectionError):
        return REDIS
    return None


def _describe(error: BaseException | str) -> str:
    if isinstance(error, BaseException):
        text = str(error).splitlines()[0][:200] if str(error) else ""
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return error


class Outages:
    """Which services are down in this process, and since when (monotonic seconds)."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def failed(self, service: str, error: BaseException | str) -> bool:
        """Report a failure. Logs, and returns True, only when this starts an outage."""
        if service in self._since:
            logger.debug("%s still unavailable (%s)", service, _describe(error))
            return False
        self._since[service] = time.monotonic()
        logger.warning("%s unavailable (%s)", service, _describe(error))
        return True

    def succeeded(self, service: str) -> float | None:
        """Report a success. Logs the recovery once; returns the outage's length if one ended."""
        started = self._since.pop(service, None)
        if started is None:
            return None
        duration = time.monotonic() - started
        logger.warning("%s available again after %.1f s", service, duration)
        return duration

    def down(self, service: str) -> bool:
        return service in self._since

    def reset(self) -> None:
        """Forget every outage (tests)."""
        self._since.clear()


outages = Outages()
