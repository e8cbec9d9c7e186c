"""The messages every endpoint understands: ping, pong, resume, token_refresh (docs/protocol.md §3, §12).

A mixin of `BaseConsumer`, kept apart so the lifecycle in `base.py` reads on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from realtime.auth import authenticate, token_user_id
from realtime.connection import Connection, ConnectionUser
from realtime.consumers.pipeline import handles
from realtime.features import recovery
from realtime.protocol import CloseCode, ErrorCode, PingIn, PongIn, ProtocolError, TokenRefreshIn, now_iso
from realtime.protocol.streams import ResumeIn


class BuiltinMessages:
    """Handlers found by `pipeline.collect_handlers` through the consumer's bases."""

    @property
    def connection(self) -> Connection:
        raise NotImplementedError

    @property
    def user(self) -> ConnectionUser:
        raise NotImplementedError

    @handles("ping", PingIn, auth=False)
    async def on_ping(self, message: PingIn, frame_id: Any) -> dict[str, Any]:
        return {"type": "pong", "timestamp": now_iso()}

    @handles("pong", PongIn, auth=False)
    async def on_pong(self, message: PongIn, frame_id: Any) -> None:
        return None  # receiving it already counted as activity

    @handles("resume", ResumeIn, auth=False)
    async def on_resume(self, message: ResumeIn, frame_id: Any) -> dict[str, Any]:
        """Replay what the client missed of its streams (docs/protocol.md §12)."""
        return await recovery.resume(self.connection, message)

    @handles("token_refresh", TokenRefreshIn)
    async def on_token_refresh(self, message: TokenRefreshIn, frame_id: Any) -> dict[str, Any] | None:
        """Swap in a new access token of the same user, so the connection outlives the old one."""
        conn, user = self.connection, self.user
        result = await authenticate(message.token, None)
        if result.error == ErrorCode.BANNED and token_user_id(message.token) != user.id:
            # Someone else's token: whether its owner is banned is none of this caller's business.
            raise ProtocolError(ErrorCode.INVALID_TOKEN, "The token belongs to another user.")
        if result.error == ErrorCode.BANNED:
            conn.send_error(ErrorCode.BANNED, result.error_message, frame_id)
            conn.close(CloseCode.FORBIDDEN)
            return None
        if result.error is not None:
            raise ProtocolError(result.error, result.error_message)
        if result.user is None or result.user.id != user.id or result.token_expires_at is None:
            raise ProtocolError(ErrorCode.INVALID_TOKEN, "The token belongs to another user.")
        # Fresh moderation state; guild and party stay as the connection's groups know them.
        result.user.guild_id, result.user.party_id = user.guild_id, user.party_id
        conn.user = result.user
        conn.token_expires_at = result.token_expires_at
        expires = datetime.fromtimestamp(result.token_expires_at, tz=UTC)
        return {"type": "token_refreshed", "expires_at": now_iso(expires)}
