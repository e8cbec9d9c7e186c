"""Logging: plain or JSON lines (`LOG_FORMAT`), the connection a line was logged for, no JWTs.

Code that runs for one WebSocket connection calls `bind_connection()` once, when the connection
is authenticated; every record logged afterwards in that task (and in the threads and tasks it
starts, which copy its context) carries `connection_id`, `user_id` and `endpoint`.
`ConnectionContextFilter` copies them, and the instance id, onto each record; the formatters
write them out. Tokens are redacted from the finished line, whatever field they ended up in.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

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


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    connection_id: str
    user_id: str | None
    endpoint: str


# One variable, set once per connection: each connection's consumer runs in its own task, and a
# task's context is its own copy, so connections never see each other's values.
_connection: ContextVar[ConnectionContext | None] = ContextVar("rpgrealtime_connection", default=None)

CONTEXT_FIELDS = ("connection_id", "user_id", "endpoint")


def bind_connection(*, connection_id: str, user_id: str | None, endpoint: str) -> None:
    """Tag every record logged from now on in the current task with this connection."""
    _connection.set(ConnectionContext(connection_id=connection_id, user_id=user_id, endpoint=endpoint))


def bound_connection() -> ConnectionContext | None:
    """The connection bound in the current context, if any."""
    return _connection.get()


class ConnectionContextFilter(logging.Filter):
    """Puts `instance` on every record, and the bound connection's fields when there is one.

    Fields a caller passed explicitly (`extra={"connection_id": …}`) are left as they are.
    """

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "instance"):
            record.instance = self.instance
        context = _connection.get()
        if context is not None and not hasattr(record, "connection_id"):
            record.connection_id = context.connection_id
            record.user_id = context.user_id
            record.endpoint = context.endpoint
        return True


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger message`, then the connection's fields when the record has them."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if hasattr(record, "connection_id"):
            line += "".join(f" {name}={getattr(record, name, None)}" for name in CONTEXT_FIELDS)
        return line

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: time, level, logger, message, instance, then any other fields.

    A traceback goes into `exc_info` as one string, so it stays on the line. The Django request
    object that `django.request` records carry is left out: its repr includes the query string.
    """

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "request", "taskName"],
        )

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        # The wire protocol's timestamp shape: ISO 8601, UTC, milliseconds, `Z`.
        created = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["time"] = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
