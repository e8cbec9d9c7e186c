"""Admission: whether a connection may open, and how a refusal is told (docs/protocol.md §1, §3).

A refused client is accepted first, sent an `error` frame, then closed with the 44xx code:
closing before `accept()` would give it a bare HTTP 403 and no reason.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.conf import settings

from realtime import metrics
from realtime.auth import AuthResult
from realtime.protocol import CloseCode, ErrorCode, encode, error_frame
from realtime.runtime import Runtime
from realtime.transport import OutboundFrame, transport_for


class Refusal(NamedTuple):
    close_code: int
    error_code: ErrorCode
    message: str


async def refusal(
    *, endpoint: str, requires_auth: bool, runtime: Runtime, auth: AuthResult, address: str | None
) -> Refusal | None:
    """Why this connection may not open (a drain, its token, a cap), or None."""
    if runtime.hub.draining:
        return Refusal(CloseCode.GOING_AWAY, ErrorCode.SERVER_SHUTTING_DOWN, "Server is shutting down.")
    if auth.error is not None:
        metrics.AUTH_FAILURES.labels(endpoint, auth.error).inc()
        close_code = {
            ErrorCode.BANNED: CloseCode.FORBIDDEN,
            ErrorCode.UNAVAILABLE: CloseCode.UNAVAILABLE,
        }.get(auth.error, CloseCode.UNAUTHORIZED)
        return Refusal(close_code, auth.error, auth.error_message)
    if auth.user is None and requires_auth:
        metrics.AUTH_FAILURES.labels(endpoint, ErrorCode.AUTHENTICATION_REQUIRED).inc()
        return Refusal(
            CloseCode.UNAUTHORIZED, ErrorCode.AUTHENTICATION_REQUIRED, f"/ws/{endpoint} needs an access token."
        )
    return await _over_cap(runtime, auth, address)


async def _over_cap(runtime: Runtime, auth: AuthResult, address: str | None) -> Refusal | None:
    per_ip = settings.WEBSOCKET_MAX_CONNECTIONS_PER_IP
    if per_ip and address:
        local = sum(1 for c in runtime.hub.connections.values() if c.client_addr == address)
        if local >= per_ip:
            return Refusal(
                CloseCode.RATE_LIMIT_ABUSE, ErrorCode.TOO_MANY_CONNECTIONS, f"At most {per_ip} connections per address."
            )
    per_user = settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER
    if per_user and auth.user is not None:
        try:
            counts = await runtime.store.user_endpoints(auth.user.id)
        except Exception:
            counts = {}
        if sum(counts.values()) >= per_user:
            return Refusal(
                CloseCode.RATE_LIMIT_ABUSE, ErrorCode.TOO_MANY_CONNECTIONS, f"At most {per_user} connections per user."
            )
    return None


async def refuse(send: Any, endpoint: str, refusal: Refusal, subprotocol: str | None) -> None:
    """Accept, explain with an `error` frame, close with the refusal's code."""
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    # Through the transport, not `websocket.close`: daphne's close goes through autobahn's
    # sendClose(), which refuses 1001 from a server (the client would see 1006 instead).
    transport = transport_for(send, settings.WEBSOCKET_SEND_BUFFER_BYTES)
    transport.write(OutboundFrame(encode(error_frame(refusal.error_code, refusal.message))))
    await transport.close(int(refusal.close_code))
    metrics.ERRORS.labels(endpoint, refusal.error_code).inc()
    metrics.CLOSES.labels(endpoint, str(int(refusal.close_code))).inc()
