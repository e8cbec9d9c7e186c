"""JWT authentication for the ASGI WebSocket stack (PROTOCOL §1).

A token may come in the query string (`?token=`), an `Authorization: Bearer` header, or the
`["bearer", "<jwt>"]` subprotocol pair browsers can send. The outcome is put in the scope as an
`AuthResult`; the consumer accepts first and then refuses with an `error` frame and a 44xx close
code, because closing before `accept()` would give the client a bare HTTP 403 and no reason.
A present but invalid token is never downgraded to anonymous. One middleware instance serves
every connection, so it keeps no per-connection state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from realtime.outages import DATABASE, outages
from realtime.protocol import ErrorCode

logger = logging.getLogger(__name__)

BEARER_SUBPROTOCOL = "bearer"


@dataclass(frozen=True, slots=True)
class AuthResult:
    user: Any = None  # the User, or None for anonymous / refused
    error: ErrorCode | None = None
    error_message: str = ""
    token_expires_at: float | None = None
    subprotocol: str | None = None  # "bearer" when the client authenticated that way

    @property
    def anonymous(self) -> bool:
        return self.user is None and self.error is None


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


def token_user_id(token: str) -> str | None:
    """The user a valid access token names (None if it is not one)."""
    try:
        return str(AccessToken(token).payload.get(jwt_settings.USER_ID_CLAIM))
    except TokenError:
        return None


# What a connection needs of its user; the row is held for the whole connection, so no more
# (the password hash, names and dates would cost memory on every connection).
CONNECTION_USER_FIELDS = (
    "id",
    "username",
    "is_active",
    "is_staff",
    "is_moderator",
    "guild_id",
    "party_id",
    "banned_until",
    "muted_until",
    "has_pending_deliveries",
)


def _load_user(user_id: str) -> Any:
    User = get_user_model()
    found = list(User.objects.filter(pk=user_id).only(*CONNECTION_USER_FIELDS)[:1])  # [:1]: no ORDER BY
    return found[0] if found else None


async def authenticate(token: str | None, subprotocol: str | None) -> AuthResult:
    if token is None:
        return AuthResult(subprotocol=subprotocol)
    if not token:
        return AuthResult(error=ErrorCode.INVALID_TOKEN, error_message="Empty token.", subprotocol=subprotocol)
    try:
        access = AccessToken(token)  # checks signature, expiry and that it is an access token
    except ExpiredTokenError:
        return AuthResult(error=ErrorCode.TOKEN_EXPIRED, error_message="The token expired.", subprotocol=subprotocol)
    except TokenError:
        return AuthResult(error=ErrorCode.INVALID_TOKEN, error_message="The token is invalid.", subprotocol=subprotocol)
    user_id = access.payload.get(jwt_settings.USER_ID_CLAIM)
    try:
        user = await database_sync_to_async(_load_user)(user_id) if user_id else None
    except (ValueError, TypeError, ValidationError):  # a signed token with a malformed id
        user = None
    except DatabaseError as exc:  # the token may be fine: say "try again", not "invalid"
        outages.failed(DATABASE, exc)
        return AuthResult(
            error=ErrorCode.UNAVAILABLE,
            error_message="A backing service is unavailable; try again shortly.",
            subprotocol=subprotocol,
        )
    if user is None or not user.is_active:
        return AuthResult(
            error=ErrorCode.INVALID_TOKEN, error_message="Unknown or inactive user.", subprotocol=subprotocol
        )
    if user.is_banned(timezone.now()):
        return AuthResult(error=ErrorCode.BANNED, error_message="You are banned.", subprotocol=subprotocol)
    return AuthResult(user=user, token_expires_at=float(access.payload["exp"]), subprotocol=subprotocol)


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
