"""What a client does after each close code, and the backoff between attempts (docs/clients.md)."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from typing import Literal

CloseAction = Literal["reconnect", "reconnect_later", "refresh", "stop"]


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001  # server shutdown or deploy
    ABNORMAL = 1006  # no close frame: the network dropped, or the handshake was refused
    TOO_BIG = 1009
    UNAUTHORIZED = 4401  # token missing, invalid or expired (the `error` frame before it says which)
    FORBIDDEN = 4403  # banned or kicked
    HEARTBEAT_TIMEOUT = 4408
    SLOW_CONSUMER = 4413
    RATE_LIMIT_ABUSE = 4429  # kept sending past the rate limit, or over a connection cap
    UNAVAILABLE = 4503  # a backing service failed while connecting; the token is fine


def close_action(code: int | None, error_code: str | None = None) -> CloseAction:
    """What to do after the server closed with `code`, given the code of the `error` frame before it.

    - "reconnect": back off, then connect again;
    - "reconnect_later": the server wants us gone for a while (4429): a long backoff first;
    - "refresh": the token expired: get a new one, then connect again;
    - "stop": a person has to act (banned, kicked, credentials refused); no automatic retry.
    """
    if code == CloseCode.UNAUTHORIZED:
        # No error frame at all is almost always a token that expired in the handshake's instant:
        # one refresh costs little, and the client caps repeated refreshes.
        return "refresh" if error_code in (None, "token_expired") else "stop"
    if code == CloseCode.FORBIDDEN:
        return "stop"
    if code == CloseCode.RATE_LIMIT_ABUSE:
        return "reconnect_later"
    # 1001, 1006, 4408, 4413, 4503, a server-sent 1000 and anything unknown: come back.
    return "reconnect"


class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time in [0, min(max, initial·2ⁿ))."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        return self.rng() * ceiling

    def long(self, minimum: float) -> float:
        """A long wait (4429): in [minimum, 2·minimum), so a crowd does not return at once."""
        self.attempt += 1
        return minimum + self.rng() * minimum

    def reset(self) -> None:
        self.attempt = 0
