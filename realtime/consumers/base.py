"""The base consumer: the lifecycle of every connection (docs/protocol.md §1–§3).

It accepts or refuses, opens the `Connection` (groups, registry, presence, kept events), feeds
client frames through the checks in `pipeline.py`, and tears everything down on close. An
endpoint consumer declares its groups and maps message types to feature calls:

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
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from realtime import metrics
from realtime.auth import AuthResult
from realtime.boot import ensure_runtime
from realtime.connection import Connection, ConnectionUser
from realtime.consumers import admission, pipeline
from realtime.consumers.builtins import BuiltinMessages
from realtime.consumers.pipeline import Handler, handles
from realtime.features import recovery
from realtime.features.identity import membership_groups
from realtime.features.offline import OfflineDelivery
from realtime.features.presence import PresenceTracker
from realtime.outages import outages, service_of
from realtime.protocol import PROTOCOL_VERSION, now_iso
from realtime.ratelimit import TokenBucket, parse_rate_limit
from realtime.runtime import Runtime
from realtime.transport import transport_for
from rpgrealtime.logging import bind_connection

logger = logging.getLogger(__name__)

__all__ = ["BaseConsumer", "handles"]


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


class BaseConsumer(BuiltinMessages, AsyncWebsocketConsumer):
    endpoint: ClassVar[str] = ""
    requires_auth: ClassVar[bool] = True
    handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = pipeline.collect_handlers(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: Connection | None = None
        self.runtime: Runtime | None = None
        self._gate: pipeline.InboundGate | None = None
        self._gated_on_arrival = False
        self._admitted: admission.Admitted | None = None
        self._torn_down = False

    @property
    def connection(self) -> Connection:
        """This consumer's open connection (handlers run only once it exists)."""
        assert self.conn is not None, "no connection before websocket_connect"
        return self.conn

    @property
    def user(self) -> ConnectionUser:
        """The authenticated user (in handlers that require authentication)."""
        user = self.connection.user
        assert user is not None, "an anonymous connection has no user"
        return user

    @property
    def node(self) -> Runtime:
        assert self.runtime is not None, "no runtime before websocket_connect"
        return self.runtime

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

    # --- connect -------------------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.runtime = runtime = await ensure_runtime()
        auth: AuthResult = self.scope.get("auth") or AuthResult()
        client = self.scope.get("client")
        connection_id = uuid.uuid4().hex
        outcome = await admission.admit(
            endpoint=self.endpoint,
            requires_auth=self.requires_auth,
            runtime=runtime,
            auth=auth,
            address=str(client[0]) if client else None,
            connection_id=connection_id,
        )
        if isinstance(outcome, admission.Refusal):
            self._torn_down = True
            await admission.refuse(self.base_send, self.endpoint, outcome, auth.subprotocol)
            return
        self._admitted = outcome
        try:
            await self.base_send({"type": "websocket.accept", "subprotocol": auth.subprotocol})
        except BaseException:
            await self._release(connection_id, auth.user)
            raise
        await self._open(runtime, auth, connection_id, outcome)

    async def _open(self, runtime: Runtime, auth: AuthResult, connection_id: str, admitted: admission.Admitted) -> None:
        self.conn = conn = Connection(
            connection_id=connection_id,
            endpoint=self.endpoint,
            user=auth.user,
            client_addr=admitted.address,
            transport=transport_for(self.base_send, settings.WEBSOCKET_SEND_BUFFER_BYTES),
            token_expires_at=auth.token_expires_at,
            opening=True,
        )
        limits = parse_rate_limit(settings.WEBSOCKET_RATE_LIMIT)
        self._gate = pipeline.InboundGate(
            conn,
            TokenBucket(*limits) if limits else None,
            max_bytes=settings.WEBSOCKET_MAX_MESSAGE_BYTES,
            max_queued=settings.WEBSOCKET_MAX_QUEUED_FRAMES,
            max_queued_bytes=settings.WEBSOCKET_MAX_QUEUED_BYTES,
        )
        self._gated_on_arrival = conn.transport.gate_arrivals(self._gate)
        # Every log line of this connection's task names it (LOG_FORMAT=json: separate fields).
        bind_connection(connection_id=conn.id, user_id=conn.user_id, endpoint=self.endpoint)
        # Frames for it are held until `connection_established` is out (Connection.holding).
        runtime.hub.add(conn)
        names = membership_groups(conn) + list(self.initial_groups()) + await self.opening_groups()
        # Subscribed before the streams' positions are read: no frame falls between the two.
        await runtime.hub.join(conn, names)
        positions = await recovery.follow_groups(conn, names)
        # The first frame: clients rely on it (docs/protocol.md §1).
        user = conn.user
        conn.send_first(
            {
                "type": "connection_established",
                "connection_id": conn.id,
                "endpoint": self.endpoint,
                "user": {"id": user.id, "username": user.username} if user is not None else None,
                "heartbeat_interval": _seconds(settings.WEBSOCKET_HEARTBEAT_INTERVAL),
                "protocol": PROTOCOL_VERSION,
                "streams": {name: position.as_wire() for name, position in positions.items()},
                "server_time": now_iso(),
            }
        )
        # Stream frames wait for the client's first frame (a `resume` replays the past first).
        window = settings.WEBSOCKET_RESUME_WINDOW
        conn.opened(hold_streams=window > 0)
        if window > 0:
            asyncio.get_running_loop().call_later(window, recovery.resume_window_over, conn)
        metrics.CONNECTS.labels(self.endpoint).inc()
        runtime.registry.opened(conn)
        await self._guard(runtime.get(PresenceTracker).opened(conn, admitted.presence), "presence")
        await self._guard(self.on_connected(), "on_connected")
        if user is not None and user.has_pending_deliveries:
            await self._guard(runtime.get(OfflineDelivery).deliver(conn), "offline delivery")

    async def _release(self, connection_id: str, user: ConnectionUser | None) -> None:
        """Give back what admission counted for a connection (its address, its presence)."""
        runtime, admitted = self.runtime, self._admitted
        if runtime is None or admitted is None:
            return
        admitted.release(runtime)
        self._admitted = None
        if not runtime.hub.draining:  # a drain forgets the whole instance at once
            await self._guard(runtime.get(PresenceTracker).closed(connection_id=connection_id, user=user), "presence")

    # --- receive -------------------------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        conn, gate = self.conn, self._gate
        if conn is None or gate is None or conn.closing:
            return
        text = message.get("text")
        if self._gated_on_arrival:
            gate.taken()
        elif not gate(text):
            return
        assert text is not None  # binary frames never pass the gate
        parsed = pipeline.parse(conn, self.handlers, text)
        if parsed is None:
            return
        if conn.holding and parsed[0].message_type != "resume":
            conn.release_held()  # not resuming: live stream frames go out as they come
        await pipeline.run(self, conn, *parsed)

    # --- close ---------------------------------------------------------------------------------

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
        await self._guard(runtime.get(OfflineDelivery).connection_closed(conn), "pending release")
        await self._release(conn.id, conn.user)
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

    # --- hooks for endpoint consumers --------------------------------------------------------

    def initial_groups(self) -> Iterable[str]:
        """Groups besides the user's own and its memberships (e.g. `chat.global`)."""
        return ()

    async def opening_groups(self) -> list[str]:
        """Groups found when the connection opens (a running fight), before
        `connection_established`, so their streams' positions are in it."""
        return []

    async def on_connected(self) -> None:
        """After `connection_established` and group joins, before any client frame."""

    async def on_disconnected(self) -> None:
        """After the connection left every group and presence forgot it."""
