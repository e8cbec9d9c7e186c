"""How a client frame becomes a handler call: the checks every frame passes, in a fixed order,
and the `error` each failure gets (docs/protocol.md §2–§3). The connection always stays open.

Order: activity, binary, size, rate limit, backlog (`InboundGate`, as frames arrive where the
server allows it); JSON, object, `id`, `type`, handler, authentication, schema (`parse`); then
the handler, whose failures map to error codes (`run`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from django.db import Error as DjangoDatabaseError
from pydantic import ValidationError

from realtime import metrics
from realtime.connection import Connection
from realtime.outages import outages, service_of
from realtime.protocol import (
    ClientFrame,
    CloseCode,
    ErrorCode,
    ProtocolError,
    decode,
    exact_frame_id,
    valid_frame_id,
    validation_details,
)
from realtime.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# A client closed for abuse that keeps sending is dropped after this long: reading its flood to
# the end of the closing handshake would cost the instance as much as serving it.
ABUSE_ABORT_SECONDS = 1.0

# Errors from backing services that the client should see as "try again", not as a crash.
UNAVAILABLE_ERRORS = (
    DjangoDatabaseError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Handler:
    message_type: str
    schema: type[ClientFrame] | None
    requires_auth: bool
    method: Callable[..., Awaitable[dict[str, Any] | None]]


def handles(message_type: str, schema: type[ClientFrame] | None = None, *, auth: bool = True) -> Callable:
    """Route client frames of `message_type` to the decorated method, validated by `schema`."""

    def decorate(method: Callable) -> Callable:
        method._handles = (message_type, schema, auth)  # type: ignore[attr-defined]
        return method

    return decorate


def collect_handlers(cls: type) -> dict[str, Handler]:
    """Every `@handles` method of a consumer class and its bases (a subclass overrides)."""
    found: dict[str, Handler] = {}
    for klass in reversed(cls.__mro__):
        for attribute in vars(klass).values():
            spec = getattr(attribute, "_handles", None)
            if spec is not None:
                found[spec[0]] = Handler(spec[0], spec[1], spec[2], attribute)
    return found


def frame_id_of(text: bytes | str) -> Any:
    """The valid `id` of a frame that is refused before it is handled, else None."""
    try:
        data = decode(text)
    except ValueError:
        return None
    frame_id = exact_frame_id(text, data.get("id")) if isinstance(data, dict) else None
    return frame_id if frame_id is not None and valid_frame_id(frame_id) else None


class InboundGate:
    """The limits on one connection's client frames: activity, binary, size, rate, backlog.

    Under daphne it runs as each frame arrives (`Transport.gate_arrivals`), so a client that
    sends faster than the server works is refused by the bucket at once and never has more than
    `max_queued` frames waiting; elsewhere it runs when the frame is processed.
    """

    __slots__ = ("bucket", "conn", "max_bytes", "max_queued", "max_queued_bytes", "queued_bytes", "sizes")

    def __init__(
        self, conn: Connection, bucket: TokenBucket | None, *, max_bytes: int, max_queued: int, max_queued_bytes: int
    ) -> None:
        self.conn = conn
        self.bucket = bucket
        self.max_bytes = max_bytes
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        # Sizes of the admitted frames still waiting, oldest first (frames are handled in order).
        self.sizes: deque[int] = deque()
        self.queued_bytes = 0

    def taken(self) -> None:
        """The oldest admitted frame is being handled: it no longer counts as waiting."""
        if self.sizes:
            self.queued_bytes -= self.sizes.popleft()

    def __call__(self, payload: bytes | str | None, binary: bool = False, queued: int = 0) -> bool:
        """Admit a frame (True), or answer and drop it (False)."""
        conn = self.conn
        if conn.closing:
            return False
        endpoint = conn.endpoint
        conn.last_activity = time.monotonic()
        conn.frames_in += 1
        if payload is None or binary:
            metrics.frame_in(endpoint, "binary")
            conn.send_error(ErrorCode.INVALID_MESSAGE, "Binary frames are not supported; send JSON text.")
            return False
        if _too_large(payload, self.max_bytes):
            metrics.frame_in(endpoint, "oversized")
            conn.send_error(ErrorCode.MESSAGE_TOO_LARGE, f"Frames are limited to {self.max_bytes} bytes.")
            return False
        bucket = self.bucket
        if bucket is not None and not bucket.take():
            metrics.RATE_LIMITED.labels(endpoint, "connection").inc()
            metrics.frame_in(endpoint, "rate_limited")
            if bucket.abusive:
                conn.close(
                    CloseCode.RATE_LIMIT_ABUSE,
                    ErrorCode.RATE_LIMITED,
                    "Too many frames; closing.",
                    abort_after=ABUSE_ABORT_SECONDS,
                )
            else:
                # The `id` still comes back, so the client knows which request to send again.
                conn.send_error(ErrorCode.RATE_LIMITED, "Too many frames; slow down.", frame_id_of(payload))
            return False
        size = len(payload)
        if (self.max_queued and queued >= self.max_queued) or (
            self.max_queued_bytes and self.queued_bytes + size > self.max_queued_bytes
        ):
            metrics.RATE_LIMITED.labels(endpoint, "backlog").inc()
            metrics.frame_in(endpoint, "rate_limited")
            conn.close(
                CloseCode.RATE_LIMIT_ABUSE,
                ErrorCode.RATE_LIMITED,
                "Too many frames waiting to be handled; closing.",
                abort_after=ABUSE_ABORT_SECONDS,
            )
            return False
        self.sizes.append(size)
        self.queued_bytes += size
        return True


def _too_large(payload: bytes | str, limit: int) -> bool:
    if isinstance(payload, bytes):
        return len(payload) > limit
    # surrogatepass: a lone surrogate (impossible from a real server, which checks UTF-8, but not
    # from every ASGI caller) must be refused as invalid JSON later, not crash here.
    return len(payload) > limit or (len(payload) * 4 > limit and len(payload.encode("utf-8", "surrogatepass")) > limit)


def parse(conn: Connection, handlers: dict[str, Handler], text: str) -> tuple[Handler, Any, Any] | None:
    """JSON, object, `id`, `type`, handler, authentication and schema: (handler, payload, id),
    or None (refused and answered)."""
    endpoint = conn.endpoint
    try:
        data = decode(text)
    except ValueError:
        metrics.frame_in(endpoint, "invalid")
        conn.send_error(ErrorCode.INVALID_JSON, "The frame is not valid JSON.")
        return None
    if not isinstance(data, dict):
        metrics.frame_in(endpoint, "invalid")
        conn.send_error(ErrorCode.INVALID_MESSAGE, "A frame must be a JSON object.")
        return None
    frame_id = exact_frame_id(text, data.get("id"))
    if frame_id is not None and not valid_frame_id(frame_id):
        metrics.frame_in(endpoint, "invalid")
        conn.send_error(ErrorCode.INVALID_MESSAGE, "'id' must be a string or integer of at most 64 characters.")
        return None
    message_type = data.get("type")
    if not isinstance(message_type, str):
        metrics.frame_in(endpoint, "invalid")
        conn.send_error(ErrorCode.INVALID_MESSAGE, "Every frame needs a string 'type'.", frame_id)
        return None
    handler = handlers.get(message_type)
    if handler is None:
        metrics.frame_in(endpoint, "other")
        conn.send_error(
            ErrorCode.UNKNOWN_TYPE, f"Unknown message type for /ws/{endpoint}.", frame_id, {"type": message_type[:64]}
        )
        return None
    metrics.frame_in(endpoint, message_type)
    if handler.requires_auth and conn.user is None:
        conn.send_error(ErrorCode.AUTHENTICATION_REQUIRED, "Log in to do that.", frame_id)
        return None
    try:
        payload = handler.schema.model_validate(data) if handler.schema is not None else data
    except ValidationError as exc:
        conn.send_error(
            ErrorCode.INVALID_MESSAGE, "The frame does not match its schema.", frame_id, validation_details(exc)
        )
        return None
    return handler, payload, frame_id


async def run(consumer: Any, conn: Connection, handler: Handler, payload: Any, frame_id: Any) -> None:
    """Call the handler; its result is the reply (with the frame's `id`), its failures errors."""
    try:
        result = await handler.method(consumer, payload, frame_id)
    except ProtocolError as exc:
        conn.send_error(exc.code, exc.message, frame_id, exc.details)
        return
    except UNAVAILABLE_ERRORS as exc:
        service = service_of(exc)
        if service is None:
            logger.warning("backing service failed in %s/%s", conn.endpoint, handler.message_type, exc_info=True)
        else:  # an outage: logged once, not once per frame (realtime/outages.py)
            outages.failed(service, exc)
        conn.send_error(ErrorCode.UNAVAILABLE, "A backing service is unavailable; try again shortly.", frame_id)
        return
    except Exception:
        logger.exception("handler %s/%s failed", conn.endpoint, handler.message_type)
        conn.send_error(ErrorCode.INTERNAL_ERROR, "Internal server error.", frame_id)
        return
    if result is not None:
        conn.reply(result, frame_id)
