"""One open WebSocket on this instance: who it is, how frames reach it, and how it closes.

The hub, housekeeping and the features hold `Connection`s, never consumers: everything they
may do to a socket (send a frame, close it, drop a client that stopped reading) is here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from realtime import metrics
from realtime.protocol import CloseCode, ErrorCode, encode, error_frame, with_id
from realtime.transport import OutboundFrame, Transport

logger = logging.getLogger(__name__)

# How long a slow consumer gets to read its close frame before the socket is dropped.
SLOW_CLOSE_GRACE_SECONDS = 2.0
# What a connection holds back: everything until it is open, then stream frames until the client
# has had its chance to resume, then nothing.
HOLD_NONE, HOLD_STREAMS, HOLD_ALL = 0, 1, 2
# A client that sends nothing while this many frames wait for it gets them without waiting more.
MAX_HELD_FRAMES = 1000


@dataclass(slots=True)
class ConnectionUser:
    """What a connection knows of its user. Loaded once at connect; controls from any instance
    keep it current (membership moves, moderation), so handlers never query for it."""

    id: str
    username: str
    is_staff: bool = False
    is_moderator: bool = False
    guild_id: str | None = None
    party_id: str | None = None
    muted_until: datetime | None = None
    banned_until: datetime | None = None
    has_pending_deliveries: bool = False

    @property
    def can_moderate(self) -> bool:
        return self.is_staff or self.is_moderator

    def banned(self, now: datetime) -> bool:
        return self.banned_until is not None and self.banned_until > now


class Connection:
    """Identity, transport, group memberships and counters of one connection.

    Kept small (`__slots__`) because an instance holds thousands of them.
    """

    __slots__ = (
        "client_addr",
        "closing",
        "connected_at",
        "endpoint",
        "floors",
        "frames_in",
        "frames_out",
        "groups",
        "held",
        "holding",
        "id",
        "last_activity",
        "token_expires_at",
        "transport",
        "user",
    )

    def __init__(
        self,
        *,
        connection_id: str,
        endpoint: str,
        user: ConnectionUser | None,
        client_addr: str | None,
        transport: Transport,
        token_expires_at: float | None,
        opening: bool = False,
    ) -> None:
        self.id = connection_id
        self.endpoint = endpoint
        self.user = user
        self.client_addr = client_addr
        self.transport = transport
        self.groups: set[str] = set()
        self.connected_at = time.time()
        self.last_activity = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.token_expires_at = token_expires_at
        self.closing = False
        # Recovery (docs/protocol.md §12). `floors`: where each stream stood when this connection
        # began to follow it; live frames at or below are the past a `resume` replays. While
        # `holding` (HOLD_ALL until `connection_established` is out, HOLD_STREAMS until the
        # client's first frame or a replay is done) frames wait in `held`, in arrival order.
        self.floors: dict[str, int] | None = None
        self.holding = HOLD_ALL if opening else HOLD_NONE
        self.held: list[tuple[OutboundFrame, str | None, int]] = []  # (frame, stream, offset)

    # --- identity ----------------------------------------------------------------------------

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user is not None else None

    @property
    def username(self) -> str | None:
        return self.user.username if self.user is not None else None

    # --- sending -----------------------------------------------------------------------------

    def deliver(self, frame: OutboundFrame) -> bool:
        """Hand an encoded frame to the socket; False when the client has fallen too far behind."""
        if self.closing:
            return True
        if self.holding == HOLD_ALL:
            return self._hold(frame, None, 0)
        self.frames_out += 1
        return self.transport.write(frame)

    def deliver_stream(self, frame: OutboundFrame, stream: str, offset: int) -> bool:
        """A live frame of a recoverable stream: dropped when a resume would replay it, held while
        the client may still resume, written otherwise."""
        floors = self.floors
        if floors is not None and offset <= floors.get(stream, -1):
            return True
        if self.holding:
            return self._hold(frame, stream, offset)
        return self.deliver(frame)

    def _hold(self, frame: OutboundFrame, stream: str | None, offset: int) -> bool:
        self.held.append((frame, stream, offset))
        if len(self.held) >= MAX_HELD_FRAMES:
            self.release_held()  # a client that waits this long gets them as they come
        return True

    # --- recovery (docs/protocol.md §12) --------------------------------------------------------

    def set_floors(self, floors: dict[str, int]) -> None:
        """This connection now follows these streams, from these offsets on."""
        self.floors = {**(self.floors or {}), **floors}

    def opened(self, *, hold_streams: bool) -> None:
        """`connection_established` is out: frames held while opening go now, except those of
        streams (when `hold_streams`), kept until the client's first frame could ask to resume."""
        if self.holding != HOLD_ALL:
            return
        self.holding = HOLD_STREAMS if hold_streams and self.floors else HOLD_NONE
        floors = self.floors or {}
        held, self.held = self.held, []
        for frame, stream, offset in held:
            if stream is None:
                self._write(frame)
            elif offset <= floors.get(stream, -1):
                continue  # held before the floor was read: the past, which a resume replays
            elif self.holding:
                self.held.append((frame, stream, offset))
            else:
                self._write(frame)

    def hold_streams(self) -> None:
        """Hold live stream frames while a replay runs (a resume sent after the first frame)."""
        if not self.holding:
            self.holding = HOLD_STREAMS

    def release_held(self) -> None:
        """Stop holding: what waited goes out, in the order it arrived."""
        if self.holding == HOLD_ALL:
            return
        self.holding = HOLD_NONE
        held, self.held = self.held, []
        for frame, _stream, _offset in held:
            self._write(frame)

    def replay(self, text: str) -> None:
        """A frame as it was first sent, from the stream log: written past any hold."""
        self._write(OutboundFrame(text))

    def _write(self, frame: OutboundFrame) -> None:
        if self.closing:
            return
        self.frames_out += 1
        if not self.transport.write(frame):
            self.close_slow()

    def send(self, frame: dict[str, Any]) -> None:
        """Encode and write one frame to this connection only (after any frame held for it)."""
        metrics.frames_out(self.endpoint, frame.get("type", "other"))
        if not self.deliver(OutboundFrame(encode(frame))):
            self.close_slow()

    def send_first(self, frame: dict[str, Any]) -> None:
        """The frame that opens the connection (`connection_established`): before anything held."""
        metrics.frames_out(self.endpoint, frame.get("type", "other"))
        self._write(OutboundFrame(encode(frame)))

    def reply(self, frame: dict[str, Any], frame_id: Any) -> None:
        """A direct reply: repeats the client's `id` (docs/protocol.md, envelope)."""
        self.send(frame if frame_id is None else {**frame, "id": frame_id})

    def reply_text(self, text: str, frame_id: Any) -> None:
        """A direct reply that is already encoded (a stream frame as the stream log sent it)."""
        metrics.frames_out(self.endpoint, "reply")
        if not self.deliver(OutboundFrame(with_id(text, frame_id))):
            self.close_slow()

    def send_error(self, code: ErrorCode, message: str, frame_id: Any = None, details: Any = None) -> None:
        metrics.ERRORS.labels(self.endpoint, code).inc()
        self.send(error_frame(code, message, frame_id, details))

    # --- closing -----------------------------------------------------------------------------

    def close(
        self,
        code: int,
        error_code: ErrorCode | None = None,
        message: str | None = None,
        *,
        abort_after: float | None = None,
    ) -> None:
        """Close from synchronous code (hub, housekeeping, controls): error frame first, then the
        code. `abort_after` (a client closed for abuse): read nothing more from it, and drop the
        socket that many seconds later if it has not gone."""
        if self.closing:
            return
        if error_code is not None:
            self.send_error(error_code, message or "")
        self.closing = True
        metrics.CLOSES.labels(self.endpoint, str(int(code))).inc()
        self.transport.close_now(int(code))
        if abort_after is not None:
            self.transport.stop_reading()
            asyncio.get_running_loop().call_later(abort_after, self.transport.abort)

    def close_slow(self) -> None:
        """The client stopped reading: close with 4413, and drop the socket if even that is not read."""
        if self.closing:
            return
        metrics.SLOW_CONSUMERS.inc()
        logger.info("closing slow consumer %s (%d bytes unsent)", self.id, self.transport.pending_bytes())
        self.close(CloseCode.SLOW_CONSUMER)
        asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE_SECONDS, self.transport.abort)

    def close_now(self, code: int) -> None:
        """Shutdown path: write the close frame synchronously where the server allows it."""
        if self.closing:
            return
        self.closing = True
        metrics.CLOSES.labels(self.endpoint, str(int(code))).inc()
        self.transport.close_now(int(code))

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.endpoint} user={self.user_id}>"
