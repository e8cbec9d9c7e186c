"""Who a token belongs to: JWT verification and the one user lookup of a connect (docs/protocol.md §1).

Used by the WebSocket middleware at the handshake and by `token_refresh` on an open connection.
A present but invalid token is never downgraded to anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from realtime.connection import ConnectionUser
from realtime.outages import DATABASE, outages
from realtime.protocol import ErrorCode

# What a connection needs of its user row; the rest (password hash, names, dates) is never read.
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


@dataclass(frozen=True, slots=True)
class AuthResult:
    user: ConnectionUser | None = None  # None for anonymous or refused
    error: ErrorCode | None = None
    error_message: str = ""
    token_expires_at: float | None = None
    subprotocol: str | None = None  # "bearer" when the client authenticated that way


def _access_token(token: str) -> AccessToken:
    # simplejwt annotates its first parameter as a `Token`, but it is the encoded string.
    return AccessToken(token)  # type: ignore[arg-type]


def token_user_id(token: str) -> str | None:
    """The user a valid access token names (None if it is not one)."""
    try:
        return str(_access_token(token).payload.get(jwt_settings.USER_ID_CLAIM))
    except TokenError:
        return None


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


def connection_user_load(user_id: Any) -> tuple[ConnectionUser, bool] | None:
    """The user as a connection sees it, and whether the account is active; None if unknown."""
    rows = list(get_user_model().objects.filter(pk=user_id).values_list(*CONNECTION_USER_FIELDS)[:1])  # no ORDER BY
    if not rows:
        return None
    pk, username, active, staff, moderator, guild_id, party_id, banned_until, muted_until, pending = rows[0]
    user = ConnectionUser(
        id=str(pk),
        username=username,
        is_staff=staff,
        is_moderator=moderator,
        guild_id=_text_or_none(guild_id),
        party_id=_text_or_none(party_id),
        banned_until=banned_until,
        muted_until=muted_until,
        has_pending_deliveries=pending,
    )
    return user, active


async def authenticate(token: str | None, subprotocol: str | None) -> AuthResult:
    if token is None:
        return AuthResult(subprotocol=subprotocol)
    if not token:
        return AuthResult(error=ErrorCode.INVALID_TOKEN, error_message="Empty token.", subprotocol=subprotocol)
    try:
        access = _access_token(token)  # checks signature, expiry and that it is an access token
    except ExpiredTokenError:
        return AuthResult(error=ErrorCode.TOKEN_EXPIRED, error_message="The token expired.", subprotocol=subprotocol)
    except TokenError:
        return AuthResult(error=ErrorCode.INVALID_TOKEN, error_message="The token is invalid.", subprotocol=subprotocol)
    user_id = access.payload.get(jwt_settings.USER_ID_CLAIM)
    try:
        found = await database_sync_to_async(connection_user_load)(user_id) if user_id else None
    except (ValueError, TypeError, ValidationError):  # a signed token with a malformed id
        found = None
    except DatabaseError as exc:  # the token may be fine: say "try again", not "invalid"
        outages.failed(DATABASE, exc)
        return AuthResult(
            error=ErrorCode.UNAVAILABLE,
            error_message="A backing service is unavailable; try again shortly.",
            subprotocol=subprotocol,
        )
    if found is None or not found[1]:
        return AuthResult(
            error=ErrorCode.INVALID_TOKEN, error_message="Unknown or inactive user.", subprotocol=subprotocol
        )
    user = found[0]
    if user.banned(timezone.now()):
        return AuthResult(error=ErrorCode.BANNED, error_message="You are banned.", subprotocol=subprotocol)
    return AuthResult(user=user, token_expires_at=float(access.payload["exp"]), subprotocol=subprotocol)
