"""Per-connection token bucket (docs/protocol.md §3: `WEBSOCKET_RATE_LIMIT` = `RATE/BURST`, `0` disables)."""

from __future__ import annotations

import time

from django.core.exceptions import ImproperlyConfigured

# Refusals within this window beyond the burst size count as persistent abuse (close 4429).
ABUSE_WINDOW_SECONDS = 10.0


def parse_rate_limit(value: str) -> tuple[float, float] | None:
    """'20/40' -> (20.0, 40.0); '0' or '' -> None (disabled)."""
    value = (value or "").strip()
    if value in ("", "0", "0/0"):
        return None
    rate_text, _, burst_text = value.partition("/")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else rate
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"WEBSOCKET_RATE_LIMIT must look like RATE/BURST (e.g. 20/40), not {value!r}"
        ) from exc
    if rate <= 0 or burst < 1:
        raise ImproperlyConfigured("WEBSOCKET_RATE_LIMIT needs a positive rate and a burst of at least 1")
    return rate, burst


class TokenBucket:
    __slots__ = ("burst", "rate", "refusals", "stamp", "tokens", "window_start")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.refusals = 0
        self.window_start = self.stamp

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        if now - self.window_start > ABUSE_WINDOW_SECONDS:
            self.window_start = now
            self.refusals = 0
        self.refusals += 1
        return False

    @property
    def abusive(self) -> bool:
        """More refusals within the abuse window than the burst allows."""
        return self.refusals > self.burst
