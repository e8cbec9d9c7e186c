"""Logging helpers: keep JWTs out of every log line, including access logs."""

from __future__ import annotations

import logging
import re

# A JWT is three base64url parts; query strings carry it as token=<jwt>.
_TOKEN_PATTERN = re.compile(r"(token=|Bearer\s+|bearer,\s*)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """Replace anything that looks like a presented JWT with a placeholder."""
    return _TOKEN_PATTERN.sub(r"\1[redacted]", text)


class RedactTokensFilter(logging.Filter):
    """Rewrites records whose message would contain a token (query string, header, subprotocol)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message or "earer" in message:
            record.msg = redact(message)
            record.args = None
        return True
