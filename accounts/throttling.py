"""Throttles for the sign-up and token routes that survive a cache outage.

The counters live in Django's cache, which is Redis when configured, so they are shared by every
instance. If that cache fails, DRF's throttle would turn the failure into a 500 and nobody could
log in while Redis is down; instead the counting falls back to this process's memory (the limit
then holds per instance) until the shared cache answers again.
"""

from __future__ import annotations

from django.core.cache.backends.locmem import LocMemCache
from rest_framework.throttling import ScopedRateThrottle

from realtime.outages import REDIS, outages

_local = LocMemCache("throttle-fallback", {"MAX_ENTRIES": 100_000})


class ResilientScopedRateThrottle(ScopedRateThrottle):
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # the cache client's errors (redis-py) are not Django's
            outages.failed(REDIS, exc)
            self.cache = _local
            return super().allow_request(request, view)
