"""System checks for the settings the account routes add (`manage.py check`, docs/operations.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# The membership routes' throttle scope (accounts/views.py) and the variable that sets it.
THROTTLES = {"membership": "MEMBERSHIP_THROTTLE"}


def _rate_valid(rate: Any) -> bool:
    # What DRF's SimpleRateThrottle.parse_rate accepts: "<int>/<s|m|h|d…>"; None turns it off.
    if rate is None:
        return True
    if not isinstance(rate, str) or rate.count("/") != 1:
        return False
    count, period = rate.split("/")
    return count.strip().isdigit() and period[:1] in ("s", "m", "h", "d")


@register("rpgrealtime")
def check_membership_throttle(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`MEMBERSHIP_THROTTLE` has the shape DRF reads (`COUNT/PERIOD`)."""
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
    return [
        Error(
            f"{name} must look like COUNT/PERIOD (e.g. 30/min), not {rates[scope]!r}.",
            hint=f"Set {name} to a whole number of requests per s, min, hour or day, e.g. 30/min.",
            id="accounts.E001",
        )
        for scope, name in THROTTLES.items()
        if scope in rates and not _rate_valid(rates[scope])
    ]
