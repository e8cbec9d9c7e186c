"""Reading a JWT's claims, only to know when to renew it: the server checks the signature."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of `token`, or None when it is not a JWT."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def renewal_delay(token: str, lead: float = 60.0) -> float | None:
    """Seconds after receiving `token` to renew it, or None when it has no expiry.

    Timed from the token's own lifetime (`exp - iat`), not from `exp`, so a wrong client clock
    does not matter; renewed `lead` seconds before expiry, or at three quarters of a short lifetime.
    """
    claims = jwt_claims(token)
    if not claims or not isinstance(claims.get("exp"), int | float):
        return None
    iat = claims.get("iat")
    issued_at = float(iat) if isinstance(iat, int | float) else time.time()
    lifetime = max(0.0, float(claims["exp"]) - float(issued_at))
    return max(0.0, lifetime - min(lead, lifetime / 4))
