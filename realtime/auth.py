"""Who a token belongs to: JWT verification and the user lookup of a connect (docs/protocol.md §1),
shared by connects that arrive together.

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

from realtime.batching import BatchedLookup
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


def _connection_user_of(row: tuple) -> tuple[ConnectionUser, bool]:
    pk, username, active, staff, moderator, guild_id, party_id, banned_until, muted_until, pending = row
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


def connection_users_load(user_ids: list[str]) -> dict[str, tuple[ConnectionUser, bool]]:
    """The users as connections see them, and whether each account is active, by id (one query)."""
    rows = get_user_model().objects.filter(pk__in=user_ids).values_list(*CONNECTION_USER_FIELDS)
    return {str(row[0]): _connection_user_of(row) for row in rows}


async def _load_many(user_ids: list[str]) -> dict[str, tuple[ConnectionUser, bool]]:
    return await database_sync_to_async(connection_users_load)(user_ids)


# Connects that arrive together share one query (a reconnect storm: thousands at once).
_connection_users = BatchedLookup(_load_many)


def _user_key(user_id: Any) -> str | None:
    """The token's user id as the database writes it; None when it cannot be a user's id."""
    try:
        return str(get_user_model()._meta.pk.to_python(user_id)) if user_id else None
    except (ValueError, TypeError, ValidationError):  # a signed token with a malformed id
        return None


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
    user_key = _user_key(access.payload.get(jwt_settings.USER_ID_CLAIM))
    try:
        found = await _connection_users(user_key) if user_key else None
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
