"""JWT authentication for the ASGI WebSocket stack (docs/protocol.md §1).

A token may come in the query string (`?token=`), an `Authorization: Bearer` header, or the
`["bearer", "<jwt>"]` subprotocol pair browsers can send. The outcome (`realtime/auth.py`) is
put in the scope; the consumer accepts first and then refuses with an `error` frame and a 44xx
close code, because closing before `accept()` would give the client a bare HTTP 403 and no
reason. One middleware instance serves every connection, so it keeps no per-connection state.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from realtime.auth import authenticate

logger = logging.getLogger(__name__)

BEARER_SUBPROTOCOL = "bearer"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return None


def extract_token(scope: dict[str, Any]) -> tuple[str | None, str | None]:
    """Returns (token, subprotocol to select). An offered `bearer` with nothing after is ''."""
    subprotocols = list(scope.get("subprotocols") or ())
    if BEARER_SUBPROTOCOL in subprotocols:
        index = subprotocols.index(BEARER_SUBPROTOCOL)
        token = subprotocols[index + 1] if index + 1 < len(subprotocols) else ""
        return token, BEARER_SUBPROTOCOL
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        kind, _, token = authorization.strip().partition(" ")
        return (token.strip() if kind.lower() == "bearer" else ""), None
    # keep_blank_values: `?token=` (a client that built the URL from an empty variable) is a
    # present but invalid token, refused like any other, never a silent anonymous connection.
    query = parse_qs(scope.get("query_string", b"").decode("latin1"), keep_blank_values=True)
    if "token" in query:
        return query["token"][0], None
    return None, None


def origin_allowed(scope: dict[str, Any]) -> bool:
    """With WEBSOCKET_ALLOWED_ORIGINS set, a browser's Origin must be listed ("*" allows all).

    Clients that send no Origin at all (game clients, load generators) are not browsers and
    cannot be abused cross-site, so they pass.
    """
    allowed = settings.WEBSOCKET_ALLOWED_ORIGINS
    if not allowed or "*" in allowed:
        return True
    origin = _header(scope, b"origin")
    return origin is None or origin.rstrip("/") in {o.rstrip("/") for o in allowed}


def host_allowed(scope: dict[str, Any]) -> bool:
    """The handshake's Host must be one of ALLOWED_HOSTS, as Django requires of every HTTP
    request (DNS rebinding: a hostile page whose name resolves to us still sends its own Host).
    A request without a Host header cannot come from a browser and passes."""
    host = _header(scope, b"host")
    if host is None:
        return True
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # what Django allows in this case
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


class JWTAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        if not origin_allowed(scope) or not host_allowed(scope):
            # Refuse the handshake itself: the server answers HTTP 403.
            await receive()  # the websocket.connect event
            await send({"type": "websocket.close"})
            logger.info("refused WebSocket handshake from a disallowed origin or host")
            return None
        token, subprotocol = extract_token(scope)
        scope = dict(scope, auth=await authenticate(token, subprotocol))
        return await self.inner(scope, receive, send)
