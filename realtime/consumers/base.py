"""The base consumer: PROTOCOL §1–§3 for every endpoint.

It owns authentication outcomes, the envelope (`id` echo, error frames), validation, size and
rate limits, heartbeats, `connection_established`, presence, offline delivery and the registry.
An endpoint consumer only declares its groups and maps message types to service calls:

    class ChatConsumer(BaseConsumer):
        endpoint = "chat"

        @handles("chat_message", ChatMessageIn)
        async def on_chat_message(self, message: ChatMessageIn, frame_id):
            ...  # return a dict to reply (with the frame's id), or raise ProtocolError

Broadcast frames never pass through here: the hub writes them to the socket directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import redis.exceptions
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import Error as DatabaseError
from pydantic import ValidationError

from realtime import groups, metrics
from realtime.connection import Connection
from realtime.middleware import CONNECTION_USER_FIELDS, AuthResult, authenticate, token_user_id
from realtime.outages import outages, service_of
from realtime.protocol import (
    ClientFrame,
    CloseCode,
    ErrorCode,
    ProtocolError,
    TokenRefreshIn,
    decode,
    encode,
    error_frame,
    exact_frame_id,
    now_iso,
    valid_frame_id,
    validation_details,
)
from realtime.ratelimit import TokenBucket, parse_rate_limit
from realtime.runtime import Runtime, ensure_runtime
from realtime.services import offline, presence
from realtime.transport import OutboundFrame, transport_for

logger = logging.getLogger(__name__)

# Errors from backing services that the client should see as "try again", not as a crash.
UNAVAILABLE_ERRORS = (DatabaseError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError)

# How long a slow consumer gets to read its close frame before the socket is dropped.
SLOW_CLOSE_GRACE_SECONDS = 2.0


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


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


def _frame_id_of(text: str) -> Any:
    """The valid `id` of a frame that is refused before it is handled, else None."""
    try:
        data = decode(text)
    except ValueError:
        return None
    frame_id = exact_frame_id(text, data.get("id")) if isinstance(data, dict) else None
    return frame_id if frame_id is not None and valid_frame_id(frame_id) else None


class BaseConsumer(AsyncWebsocketConsumer):
    endpoint: ClassVar[str] = ""
    requires_auth: ClassVar[bool] = True
    # Guild/party groups this endpoint's connections follow: ("guild", "party") joins
    # `<endpoint>.guild.<id>` and `<endpoint>.party.<id>`, moved live on membership changes.
    membership_scopes: ClassVar[tuple[str, ...]] = ()
    handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Handler] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                spec = getattr(attribute, "_handles", None)
                if spec is not None:
                    found[spec[0]] = Handler(spec[0], spec[1], spec[2], attribute)
        cls.handlers = found

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: Connection | None = None
        self.runtime: Runtime | None = None
        self.user: Any = None
        self.guild_id: str | None = None
        self.party_id: str | None = None
        self._bucket: TokenBucket | None = None
        self._torn_down = False
        self._pending_lock = asyncio.Lock()
        self._delivering_pending = False

    # --- ASGI plumbing -------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        """A plain receive loop, without a per-consumer channel-layer channel.

        Channels would create one layer channel per connection and wait on it with a new task
        per message; broadcasts reach connections through the hub instead (see hub.py).
        """
        self.scope = scope
        self.channel_layer = None
        self.channel_name = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            if not self._torn_down and self.conn is not None and not (self.runtime and self.runtime.hub.draining):
                await asyncio.shield(self._teardown())

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Stock dispatch() awaits aclose_old_connections() (a thread-pool hop) before every
        # handler; database work here goes through database_sync_to_async, which already
        # closes stale connections in its own thread, so the hop is pure overhead.
        kind = message.get("type")
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)

    # --- identity ------------------------------------------------------------------------------

    @property
    def user_id(self) -> str | None:
        return str(self.user.pk) if self.user is not None else None

    @property
    def username(self) -> str | None:
        return self.user.username if self.user is not None else None

    @property
    def client_addr(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    # --- connect -------------------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.runtime = runtime = await ensure_runtime()
        auth: AuthResult = self.scope.get("auth") or AuthResult()
        subprotocol = auth.subprotocol
        if runtime.hub.draining:
            await self._refuse(
                CloseCode.GOING_AWAY, ErrorCode.SERVER_SHUTTING_DOWN, "Server is shutting down.", subprotocol
            )
            return
        if auth.error is not None:
            metrics.AUTH_FAILURES.labels(self.endpoint, auth.error).inc()
            close_code = {
                ErrorCode.BANNED: CloseCode.FORBIDDEN,
                ErrorCode.UNAVAILABLE: CloseCode.UNAVAILABLE,
            }.get(auth.error, CloseCode.UNAUTHORIZED)
            await self._refuse(close_code, auth.error, auth.error_message, subprotocol)
            return
        if auth.user is None and self.requires_auth:
            metrics.AUTH_FAILURES.labels(self.endpoint, ErrorCode.AUTHENTICATION_REQUIRED).inc()
            await self._refuse(
                CloseCode.UNAUTHORIZED,
                ErrorCode.AUTHENTICATION_REQUIRED,
                f"/ws/{self.endpoint} needs an access token.",
                subprotocol,
            )
            return
        self.user = auth.user
        over_cap = await self._over_connection_cap(runtime)
        if over_cap:
            await self._refuse(CloseCode.RATE_LIMIT_ABUSE, ErrorCode.TOO_MANY_CONNECTIONS, over_cap, subprotocol)
            return

        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        limits = parse_rate_limit(settings.WEBSOCKET_RATE_LIMIT)
        self._bucket = TokenBucket(*limits) if limits else None
        if self.user is not None:
            self.guild_id = str(self.user.guild_id) if self.user.guild_id else None
            self.party_id = str(self.user.party_id) if self.user.party_id else None
        self.conn = conn = Connection(
            connection_id=uuid.uuid4().hex,
            endpoint=self.endpoint,
            user_id=self.user_id,
            username=self.username,
            client_addr=self.client_addr,
            transport=transport_for(self.base_send, settings.WEBSOCKET_SEND_BUFFER_BYTES),
            consumer=self,
            token_expires_at=auth.token_expires_at,
        )
        # The first frame, before any group can deliver: clients rely on it (PROTOCOL §1).
        self.send_frame(
            {
                "type": "connection_established",
                "connection_id": conn.id,
                "endpoint": self.endpoint,
                "user": {"id": self.user_id, "username": self.username} if self.user is not None else None,
                "heartbeat_interval": _seconds(settings.WEBSOCKET_HEARTBEAT_INTERVAL),
                "server_time": now_iso(),
            }
        )
        metrics.CONNECTS.labels(self.endpoint).inc()
        runtime.hub.add(conn)
        # Client frames are handled only after this returns, so by the time the client can act
        # its groups are subscribed on the channel layer.
        await runtime.hub.join(conn, self._membership_groups() + list(self.initial_groups()))
        runtime.registry.opened(conn)
        if self.user is not None:
            change = await presence.connection_opened(
                user_id=self.user_id, connection_id=conn.id, endpoint=self.endpoint, instance_id=runtime.instance_id
            )
            if change is not None and change.first:
                await presence.announce_status(
                    user_id=self.user_id,
                    username=self.username,
                    status="online",
                    guild_id=self.guild_id,
                    party_id=self.party_id,
                    sole_connection=conn,
                )
        await self._guard(self.on_connected(), "on_connected")
        if self.user is not None and self.user.has_pending_deliveries:
            await self.deliver_pending()

    async def _over_connection_cap(self, runtime: Runtime) -> str | None:
        per_ip = settings.WEBSOCKET_MAX_CONNECTIONS_PER_IP
        if per_ip and self.client_addr:
            local = sum(1 for c in runtime.hub.connections.values() if c.client_addr == self.client_addr)
            if local >= per_ip:
                return f"At most {per_ip} connections per address."
        per_user = settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER
        if per_user and self.user is not None:
            try:
                counts = await runtime.state.user_endpoints(self.user_id)
            except Exception:
                counts = {}
            if sum(counts.values()) >= per_user:
                return f"At most {per_user} connections per user."
        return None

    async def _refuse(self, close_code: int, error_code: ErrorCode, message: str, subprotocol: str | None) -> None:
        """Accept, explain with an `error` frame, close with the 44xx code (PROTOCOL §1)."""
        self._torn_down = True
        await self.base_send({"type": "websocket.accept", "subprotocol": subprotocol})
        # Through the transport, not `websocket.close`: daphne's close goes through autobahn's
        # sendClose(), which refuses 1001 from a server (the client would see 1006 instead).
        transport = transport_for(self.base_send, settings.WEBSOCKET_SEND_BUFFER_BYTES)
        transport.write(OutboundFrame(encode(error_frame(error_code, message))))
        await transport.close(int(close_code))
        metrics.ERRORS.labels(self.endpoint, error_code).inc()
        metrics.CLOSES.labels(self.endpoint, str(int(close_code))).inc()

    def _membership_groups(self) -> list[str]:
        names = [groups.user(self.user_id)] if self.user is not None else []
        for scope in self.membership_scopes:
            scope_id = getattr(self, f"{scope}_id", None)
            if scope_id:
                names.append(groups.membership(self.endpoint, scope, scope_id))
        return names

    # --- receive -------------------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        conn.last_activity = time.monotonic()
        conn.frames_in += 1
        text = message.get("text")
        if text is None:
            metrics.frame_in(self.endpoint, "binary")
            self.send_error(ErrorCode.INVALID_MESSAGE, "Binary frames are not supported; send JSON text.")
            return
        limit = settings.WEBSOCKET_MAX_MESSAGE_BYTES
        # surrogatepass: a lone surrogate (impossible from a real server, which checks UTF-8,
        # but not from every ASGI caller) must be refused as invalid JSON below, not crash here.
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
            metrics.frame_in(self.endpoint, "oversized")
            self.send_error(ErrorCode.MESSAGE_TOO_LARGE, f"Frames are limited to {limit} bytes.")
            return
        if self._bucket is not None and not self._bucket.take():
            metrics.RATE_LIMITED.labels(self.endpoint, "connection").inc()
            metrics.frame_in(self.endpoint, "rate_limited")
            if self._bucket.abusive:
                self.schedule_close(CloseCode.RATE_LIMIT_ABUSE, ErrorCode.RATE_LIMITED, "Too many frames; closing.")
            else:
                # The `id` still comes back, so the client knows which request to send again.
                self.send_error(ErrorCode.RATE_LIMITED, "Too many frames; slow down.", _frame_id_of(text))
            return
        try:
            data = decode(text)
        except ValueError:
            metrics.frame_in(self.endpoint, "invalid")
            self.send_error(ErrorCode.INVALID_JSON, "The frame is not valid JSON.")
            return
        if not isinstance(data, dict):
            metrics.frame_in(self.endpoint, "invalid")
            self.send_error(ErrorCode.INVALID_MESSAGE, "A frame must be a JSON object.")
            return
        frame_id = exact_frame_id(text, data.get("id"))
        if frame_id is not None and not valid_frame_id(frame_id):
            metrics.frame_in(self.endpoint, "invalid")
            self.send_error(ErrorCode.INVALID_MESSAGE, "'id' must be a string or integer of at most 64 characters.")
            return
        message_type = data.get("type")
        if not isinstance(message_type, str):
            metrics.frame_in(self.endpoint, "invalid")
            self.send_error(ErrorCode.INVALID_MESSAGE, "Every frame needs a string 'type'.", frame_id)
            return
        handler = self.handlers.get(message_type)
        if handler is None:
            metrics.frame_in(self.endpoint, "other")
            self.send_error(
                ErrorCode.UNKNOWN_TYPE,
                f"Unknown message type for /ws/{self.endpoint}.",
                frame_id,
                {"type": message_type[:64]},
            )
            return
        metrics.frame_in(self.endpoint, message_type)
        if handler.requires_auth and self.user is None:
            self.send_error(ErrorCode.AUTHENTICATION_REQUIRED, "Log in to do that.", frame_id)
            return
        try:
            payload = handler.schema.model_validate(data) if handler.schema is not None else data
        except ValidationError as exc:
            self.send_error(
                ErrorCode.INVALID_MESSAGE, "The frame does not match its schema.", frame_id, validation_details(exc)
            )
            return
        await self._run_handler(handler, payload, frame_id)

    async def _run_handler(self, handler: Handler, payload: Any, frame_id: Any) -> None:
        try:
            result = await handler.method(self, payload, frame_id)
        except ProtocolError as exc:
            self.send_error(exc.code, exc.message, frame_id, exc.details)
            return
        except UNAVAILABLE_ERRORS as exc:
            service = service_of(exc)
            if service is None:
                logger.warning("backing service failed in %s/%s", self.endpoint, handler.message_type, exc_info=True)
            else:  # an outage: logged once, not once per frame (realtime/outages.py)
                outages.failed(service, exc)
            self.send_error(ErrorCode.UNAVAILABLE, "A backing service is unavailable; try again shortly.", frame_id)
            return
        except Exception:
            logger.exception("handler %s/%s failed", self.endpoint, handler.message_type)
            self.send_error(ErrorCode.INTERNAL_ERROR, "Internal server error.", frame_id)
            return
        if result is not None:
            self.reply(result, frame_id)

    # --- sending -------------------------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Encode and write one frame to this connection only."""
        conn = self.conn
        if conn is None:
            return
        metrics.frames_out(self.endpoint, frame.get("type", "other"))
        if not conn.deliver(OutboundFrame(encode(frame))):
            self.schedule_slow_consumer_close()

    def send_event(self, event_type: str, **fields: Any) -> None:
        """A server event (with `timestamp`) to this connection only."""
        self.send_frame({"type": event_type, **fields, "timestamp": now_iso()})

    def reply(self, frame: dict[str, Any], frame_id: Any) -> None:
        """A direct reply: repeats the client's `id` (PROTOCOL §2)."""
        if frame_id is not None:
            frame = {**frame, "id": frame_id}
        self.send_frame(frame)

    def send_error(self, code: ErrorCode, message: str, frame_id: Any = None, details: Any = None) -> None:
        metrics.ERRORS.labels(self.endpoint, code).inc()
        self.send_frame(error_frame(code, message, frame_id, details))

    # --- closing -------------------------------------------------------------------------------

    def schedule_close(self, code: int, error_code: ErrorCode | None = None, message: str | None = None) -> None:
        """Close from synchronous code (hub, housekeeping): error frame first, then the code."""
        conn = self.conn
        if conn is None or conn.closing:
            return
        if error_code is not None:
            self.send_error(error_code, message or "")
        conn.closing = True
        metrics.CLOSES.labels(self.endpoint, str(int(code))).inc()
        asyncio.get_running_loop().create_task(conn.transport.close(int(code)))

    def schedule_slow_consumer_close(self) -> None:
        conn = self.conn
        if conn is None or conn.closing:
            return
        metrics.SLOW_CONSUMERS.inc()
        logger.info("closing slow consumer %s (%d bytes unsent)", conn.id, conn.transport.pending_bytes())
        self.schedule_close(CloseCode.SLOW_CONSUMER)
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_SECONDS, conn.transport.abort)

    def close_now(self, code: int) -> None:
        """Shutdown path: write the close frame synchronously where the server allows it."""
        conn = self.conn
        if conn is None or conn.closing:
            return
        conn.closing = True
        metrics.CLOSES.labels(self.endpoint, str(int(code))).inc()
        conn.transport.close_now(int(code))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.conn is not None and not self._torn_down:
            await self._teardown()
        raise StopConsumer()

    async def _teardown(self) -> None:
        self._torn_down = True
        conn, runtime = self.conn, self.runtime
        if conn is None or runtime is None:
            return
        conn.closing = True
        runtime.hub.remove(conn)
        runtime.registry.closed(conn)
        if self._delivering_pending:
            await self._guard(offline.pending_release_async(connection_id=conn.id), "pending release")
        if self.user is not None and not runtime.hub.draining:
            change = await presence.connection_closed(
                user_id=self.user_id, connection_id=conn.id, instance_id=runtime.instance_id
            )
            if change is not None and change.last:
                await self._guard(
                    presence.announce_status(
                        user_id=self.user_id,
                        username=self.username,
                        status="offline",
                        guild_id=self.guild_id,
                        party_id=self.party_id,
                        no_connections=True,
                    ),
                    "offline status",
                )
        # After presence forgot this connection, so a feature that asks "was this the user's
        # last connection?" gets the right answer even when two close at once on two instances.
        await self._guard(self.on_disconnected(), "on_disconnected")

    async def _guard(self, awaitable: Awaitable[Any], what: str) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            service = service_of(exc)
            if service is None:
                logger.exception("%s failed on %s", what, self.conn.id if self.conn else "?")
            else:
                outages.failed(service, exc)
            return None

    # --- offline delivery (PROTOCOL §9) ----------------------------------------------------

    async def deliver_pending(self) -> int:
        """Send this user's kept events that this endpoint carries, oldest first, exactly once."""
        conn = self.conn
        if conn is None or self.user is None:
            return 0
        async with self._pending_lock:
            self._delivering_pending = True
            try:
                claimed = await offline.pending_claim_async(
                    user_id=self.user_id, connection_id=conn.id, endpoint=self.endpoint
                )
                sent = []
                for row_id, text in claimed:
                    if conn.closing:
                        break
                    conn.deliver(OutboundFrame(text))
                    sent.append(row_id)
                if sent:
                    await offline.pending_mark_delivered_async(user_id=self.user_id, connection_id=conn.id, ids=sent)
                if len(sent) < len(claimed):
                    await offline.pending_release_async(connection_id=conn.id)
                return len(sent)
            except UNAVAILABLE_ERRORS:
                logger.warning("offline delivery to %s postponed: database unavailable", conn.id)
                return 0
            finally:
                self._delivering_pending = False

    # --- control messages from other instances (see features.py) ------------------------------

    def on_control_close(self, message: dict[str, Any]) -> None:
        code = message.get("error_code")
        self.schedule_close(
            int(message.get("code", CloseCode.FORBIDDEN)), ErrorCode(code) if code else None, message.get("message")
        )

    def on_control_membership(self, message: dict[str, Any]) -> None:
        scope, new_id = message.get("scope"), message.get("scope_id")
        if scope not in ("guild", "party") or self.conn is None or self.runtime is None:
            return
        new_id = str(new_id) if new_id else None
        old_id = getattr(self, f"{scope}_id")
        if old_id == new_id:
            return
        setattr(self, f"{scope}_id", new_id)
        if scope in self.membership_scopes:
            if old_id:
                self.runtime.hub.leave(self.conn, [groups.membership(self.endpoint, scope, old_id)])
            if new_id:
                group = groups.membership(self.endpoint, scope, new_id)
                asyncio.get_running_loop().create_task(self.runtime.hub.join(self.conn, [group]))
        self.on_membership_changed(scope, old_id, new_id)

    def on_control_deliver_pending(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(self._guard(self.deliver_pending(), "deliver pending"))

    def on_control_refresh_user(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().create_task(self._guard(self.refresh_user(), "refresh user"))

    async def refresh_user(self) -> None:
        """Reload the user row (moderation state) after another instance changed it."""
        if self.user is None:
            return
        User = get_user_model()
        user = await database_sync_to_async(
            lambda: User.objects.filter(pk=self.user.pk).only(*CONNECTION_USER_FIELDS).first()
        )()
        if user is not None:
            self.user = user

    # --- hooks for endpoint consumers --------------------------------------------------------

    def initial_groups(self) -> Iterable[str]:
        """Groups besides the user's own and its memberships (e.g. `chat.global`)."""
        return ()

    async def on_connected(self) -> None:
        """After `connection_established` and group joins, before any client frame."""

    async def on_disconnected(self) -> None:
        """After the connection left every group and presence forgot it."""

    def on_membership_changed(self, scope: str, old_id: str | None, new_id: str | None) -> None:
        """A guild or party change reached this connection (groups are already moved)."""

    # --- built-in messages (PROTOCOL §3) -------------------------------------------------------

    @handles("ping", auth=False)
    async def on_ping(self, message: dict[str, Any], frame_id: Any) -> dict[str, Any]:
        return {"type": "pong", "timestamp": now_iso()}

    @handles("pong", auth=False)
    async def on_pong(self, message: dict[str, Any], frame_id: Any) -> None:
        return None  # receiving it already counted as activity

    @handles("token_refresh", TokenRefreshIn)
    async def on_token_refresh(self, message: TokenRefreshIn, frame_id: Any) -> dict[str, Any] | None:
        """Swap in a new access token of the same user, so the connection outlives the old one."""
        result = await authenticate(message.token, None)
        if result.error == ErrorCode.BANNED and token_user_id(message.token) != self.user_id:
            # Someone else's token: whether its owner is banned is none of this caller's business.
            raise ProtocolError(ErrorCode.INVALID_TOKEN, "The token belongs to another user.")
        if result.error == ErrorCode.BANNED:
            self.send_error(ErrorCode.BANNED, result.error_message, frame_id)
            self.schedule_close(CloseCode.FORBIDDEN)
            return None
        if result.error is not None:
            raise ProtocolError(result.error, result.error_message)
        if str(result.user.pk) != self.user_id:
            raise ProtocolError(ErrorCode.INVALID_TOKEN, "The token belongs to another user.")
        self.user = result.user
        self.conn.token_expires_at = result.token_expires_at
        expires = datetime.fromtimestamp(result.token_expires_at, tz=UTC)
        return {"type": "token_refreshed", "expires_at": now_iso(expires)}
