"""Admission: whether a connection may open, and how a refusal is told (docs/protocol.md §1, §3).

Every check is decided and counted in one step, before the WebSocket is accepted: connects that
arrive together (on one instance or on several) cannot all pass a cap before any is counted.
A refused client is accepted first, sent an `error` frame, then closed with the 44xx code:
closing before `accept()` would give it a bare HTTP 403 and no reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from django.conf import settings

from realtime import metrics
from realtime.auth import AuthResult
from realtime.features.presence import PresenceTracker
from realtime.protocol import CloseCode, ErrorCode, encode, error_frame
from realtime.runtime import Runtime
from realtime.store import PresenceChange
from realtime.transport import OutboundFrame, transport_for


class Refusal(NamedTuple):
    close_code: int
    error_code: ErrorCode
    message: str


@dataclass(slots=True)
class Admitted:
    """What an admitted connection holds until it closes: its place among its address's
    connections, and its presence record (None: the store failed; reconciled later)."""

    address: str | None
    anonymous: bool
    presence: PresenceChange | None

    def release(self, runtime: Runtime) -> None:
        if self.address is not None:
            runtime.hub.release_address(self.address, anonymous=self.anonymous)
            self.address = None


def _too_many(endpoint: str, limit: int, what: str) -> Refusal:
    metrics.RATE_LIMITED.labels(endpoint, "connections").inc()
    return Refusal(CloseCode.RATE_LIMIT_ABUSE, ErrorCode.TOO_MANY_CONNECTIONS, f"At most {limit} connections {what}.")


def _auth_refusal(endpoint: str, requires_auth: bool, runtime: Runtime, auth: AuthResult) -> Refusal | None:
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
    return None


async def admit(
    *,
    endpoint: str,
    requires_auth: bool,
    runtime: Runtime,
    auth: AuthResult,
    address: str | None,
    connection_id: str,
) -> Admitted | Refusal:
    """Decide whether a connection may open: a drain, its token, the caps per address (this
    instance) and per user (the whole cluster, atomically in the store)."""
    refused = _auth_refusal(endpoint, requires_auth, runtime, auth)
    if refused is not None:
        return refused
    anonymous = auth.user is None
    if address is not None:
        per_address = settings.WEBSOCKET_MAX_CONNECTIONS_PER_IP
        anonymous_per_address = settings.WEBSOCKET_MAX_ANONYMOUS_PER_IP
        if not runtime.hub.claim_address(
            address, anonymous=anonymous, per_address=per_address, anonymous_per_address=anonymous_per_address
        ):
            if anonymous and anonymous_per_address:
                return _too_many(endpoint, anonymous_per_address, "per address without logging in")
            return _too_many(endpoint, per_address, "per address")
    admitted = Admitted(address, anonymous, None)
    if auth.user is not None:
        cap = settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER
        admitted.presence = await runtime.get(PresenceTracker).admit(
            connection_id=connection_id, user=auth.user, endpoint=endpoint, cap=cap
        )
        if admitted.presence is not None and not admitted.presence.admitted:
            admitted.release(runtime)
            return _too_many(endpoint, cap, "per user")
    return admitted


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
