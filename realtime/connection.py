"""One open WebSocket on this instance, as the hub and the housekeeping loops see it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from realtime.transport import OutboundFrame, Transport

if TYPE_CHECKING:
    from realtime.consumers.base import BaseConsumer


class Connection:
    """Identity, transport, group memberships and counters of one connection.

    Kept small (`__slots__`) because an instance holds thousands of them.
    """

    __slots__ = (
        "client_addr",
        "closing",
        "connected_at",
        "consumer",
        "endpoint",
        "frames_in",
        "frames_out",
        "groups",
        "id",
        "last_activity",
        "last_ping_sent",
        "token_expires_at",
        "transport",
        "user_id",
        "username",
        "view",
    )

    def __init__(
        self,
        *,
        connection_id: str,
        endpoint: str,
        user_id: str | None,
        username: str | None,
        client_addr: str | None,
        transport: Transport,
        consumer: BaseConsumer,
        token_expires_at: float | None,
    ) -> None:
        self.id = connection_id
        self.endpoint = endpoint
        self.user_id = user_id
        self.username = username
        self.client_addr = client_addr
        self.transport = transport
        self.consumer = consumer
        self.groups: set[str] = set()
        self.connected_at = time.time()
        self.last_activity = time.monotonic()
        self.last_ping_sent = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.token_expires_at = token_expires_at
        self.closing = False
        # Endpoint-specific state that receiver-side filters read (the world's watch position).
        self.view: Any = None

    def deliver(self, frame: OutboundFrame) -> bool:
        """Hand a frame to the socket; False when the client has fallen too far behind."""
        if self.closing:
            return True
        self.frames_out += 1
        return self.transport.write(frame)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.endpoint} user={self.user_id}>"
