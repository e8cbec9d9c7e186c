"""The connections of this process and the one channel-layer subscription that feeds them.

Stock Channels gives every consumer its own layer channel: a broadcast is then queued, decoded
and dispatched once per recipient, each time behind a thread-pool hop. Here a process owns ONE
hub channel; it joins a layer group when its first local connection joins it and leaves when the
last one goes. A broadcast therefore costs one PUBLISH in Redis, one decode per instance, and a
plain loop over the local members that writes the same prepared frame to each socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from realtime import groups, metrics
from realtime.connection import Connection
from realtime.hub_subscriptions import GroupSubscriptions
from realtime.shards import LayerShards
from realtime.transport import OutboundFrame

logger = logging.getLogger(__name__)

EVENT = "rt.event"
CONTROL = "rt.control"
# A health probe: an instance sends it to its own hub channel through the layer and waits for it.
PROBE = "rt.probe"

# How long a new connection waits for its groups to be subscribed before it proceeds anyway
# (Redis unreachable): it then still gets local deliveries while the subscription is retried.
JOIN_WAIT_SECONDS = 5.0

# Messages delivered locally because the layer failed, remembered to drop a late copy (see
# `Hub.dispatch_fallback`): the last few thousand are plenty for an outage of minutes.
FALLBACK_MEMORY = 10_000

# A filter decides, per receiving connection, which of a broadcast's frames it gets (or none).
BroadcastFilter = Callable[[Connection, Any], "str | None"]
# An observer is told once per broadcast that reached this instance, before its delivery.
BroadcastObserver = Callable[[dict[str, Any]], None]
ControlHandler = Callable[[Connection, dict[str, Any]], Any]

# The hub serving each event loop of this process (one per server process; tests get one per loop).
_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def local_hub() -> Hub | None:
    """The started hub of the running event loop, if this process serves connections."""
    try:
        return _hubs.get(asyncio.get_running_loop())
    except RuntimeError:
        return None


def serving() -> bool:
    """Does this process run a hub (is it a server, rather than a command or a shell)?"""
    return bool(_hubs)


def _message_key(message: dict[str, Any]) -> tuple:
    """Identifies a published message: controls carry an id, events their group and send time."""
    return (message.get("type"), message.get("group"), message.get("id"), message.get("sent_at"))


class Hub:
    """Local connection index, group membership and broadcast delivery for one process."""

    def __init__(self, layer: Any, instance_id: str, shards: LayerShards | None = None) -> None:
        self.layer = layer
        self.instance_id = instance_id
        # The layer's Redis servers (one unless CHANNEL_LAYER_REDIS_URLS lists several).
        self.shards = shards or LayerShards()
        self.channel: str | None = None
        # Per layer server, a group only this hub is in: a health probe of that server.
        self.probe_groups: list[str] = []
        self.connections: dict[str, Connection] = {}
        self.by_user: dict[str, set[Connection]] = {}
        self._members: dict[str, set[Connection]] = {}
        self._subscriptions: GroupSubscriptions | None = None
        self._receiver: asyncio.Task | None = None
        self._filters: dict[str, BroadcastFilter] = {}
        self._observers: dict[str, BroadcastObserver] = {}
        self._control_handlers: dict[str, ControlHandler] = {}
        self._probes: dict[str, asyncio.Future] = {}
        self._fallbacks: dict[tuple, None] = {}  # keys of messages delivered locally, oldest first
        self._addresses: dict[str, tuple[int, int]] = {}  # address -> (connections, anonymous ones)
        self.draining = False
        self.delivered = 0  # frames handed to sockets by broadcasts, for the benchmarks

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self.channel = await self._new_channel()
        self._subscriptions = GroupSubscriptions(self.layer, self.channel, self.shards)
        self._subscriptions.start()
        # Every hub listens to the cluster-wide group: controls that name connections by id
        # (admin disconnects) reach whichever instance holds them, anonymous ones included.
        self._subscriptions.want(groups.instances())
        token = uuid.uuid4().hex[:16]
        self.probe_groups = [self.shards.group_on(f"probe.{token}", shard) for shard in range(self.shards.count)]
        for group in self.probe_groups:
            self._subscriptions.want(group)
        loop = asyncio.get_running_loop()
        self._receiver = loop.create_task(self._receive_loop(), name="hub-receive")
        _hubs[loop] = self

    async def _new_channel(self) -> str:
        """This hub's layer channel. Nothing is sent to it directly (broadcasts and probes come
        through groups), but channels-redis subscribes it on the server its random name hashes
        to: with one of several servers down, another name is tried rather than not starting."""
        retries = 0 if self.shards.count == 1 else 4 * self.shards.count
        for _ in range(retries):
            try:
                return await self.layer.new_channel("hub.")
            except Exception as exc:
                logger.debug("hub channel not subscribed (%s); trying another name", exc)
        return await self.layer.new_channel("hub.")

    @property
    def own_groups(self) -> frozenset[str]:
        """The groups this hub is in for itself, not for a connection: cluster controls, probes."""
        return frozenset({groups.instances(), *self.probe_groups})

    async def stop(self) -> None:
        for loop, hub in list(_hubs.items()):
            if hub is self:
                del _hubs[loop]
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        if self._subscriptions is not None:
            await self._subscriptions.stop()

    def register_filter(self, name: str, broadcast_filter: BroadcastFilter) -> None:
        self._filters[name] = broadcast_filter

    def register_observer(self, name: str, observer: BroadcastObserver) -> None:
        """`observer(message)` runs once for each broadcast here that names it (`observe`)."""
        self._observers[name] = observer

    def register_control(self, op: str, handler: ControlHandler) -> None:
        """`handler(connection, message)` runs for each local connection a control reaches."""
        self._control_handlers[op] = handler

    # --- membership ------------------------------------------------------------------------

    # --- client addresses (connection caps per address, checked before a connection opens) ----

    def claim_address(self, address: str, *, anonymous: bool, per_address: int, anonymous_per_address: int) -> bool:
        """Count one more connection from `address` unless that exceeds a cap (0: none).

        Checked and counted in one synchronous step, so connects that arrive together cannot all
        pass the check before any is counted; `release_address` gives the place back."""
        counts = self._addresses.get(address)
        total, anonymous_count = counts if counts is not None else (0, 0)
        if per_address and total >= per_address:
            return False
        if anonymous and anonymous_per_address and anonymous_count >= anonymous_per_address:
            return False
        self._addresses[address] = (total + 1, anonymous_count + (1 if anonymous else 0))
        return True

    def release_address(self, address: str, *, anonymous: bool) -> None:
        total, anonymous_count = self._addresses.get(address, (1, 1 if anonymous else 0))
        if total <= 1:
            self._addresses.pop(address, None)
        else:
            self._addresses[address] = (total - 1, anonymous_count - (1 if anonymous else 0))

    def add(self, conn: Connection) -> None:
        self.connections[conn.id] = conn
        if conn.user_id is not None:
            self.by_user.setdefault(conn.user_id, set()).add(conn)
        metrics.CONNECTIONS.labels(conn.endpoint).inc()

    def remove(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        self.leave(conn, list(conn.groups))
        if conn.user_id is not None:
            user_conns = self.by_user.get(conn.user_id)
            if user_conns is not None:
                user_conns.discard(conn)
                if not user_conns:
                    del self.by_user[conn.user_id]
        metrics.CONNECTIONS.labels(conn.endpoint).dec()

    async def join(self, conn: Connection, groups: Iterable[str], wait: float = JOIN_WAIT_SECONDS) -> None:
        """Add `conn` to groups; returns once every group is subscribed (or `wait` passed)."""
        subscriptions = self._subscriptions
        assert subscriptions is not None, "Hub.start() was not awaited"
        pending = []
        for group in groups:
            if group in conn.groups:
                continue
            conn.groups.add(group)
            members = self._members.get(group)
            if members is None:
                members = self._members[group] = set()
            if group not in subscriptions.active:
                future = subscriptions.want(group)
                if future is not None:
                    pending.append(future)
            members.add(conn)
        if pending:
            try:
                await asyncio.wait_for(asyncio.gather(*[asyncio.shield(f) for f in pending]), wait)
            except TimeoutError:
                logger.warning("groups of %s not subscribed after %.1fs; continuing", conn.id, wait)

    def leave(self, conn: Connection, groups: Iterable[str]) -> None:
        for group in groups:
            conn.groups.discard(group)
            members = self._members.get(group)
            if members is None:
                continue
            members.discard(conn)
            if not members:
                del self._members[group]
                if self._subscriptions is not None:
                    self._subscriptions.drop(group)

    def members(self, group: str) -> set[Connection]:
        return self._members.get(group, set())

    def user_connections(self, user_id: str) -> set[Connection]:
        return self.by_user.get(str(user_id), set())

    @property
    def subscribed_groups(self) -> set[str]:
        return set(self._subscriptions.active) if self._subscriptions else set()

    # --- health --------------------------------------------------------------------------

    async def probe(self, shard: int = 0) -> None:
        """Send a message to this hub's probe group on one layer server and wait until it is back.

        With Redis this is a real PUBLISH on that server and a message read from the
        subscription the hub receives that server's broadcasts on, so it fails exactly when
        delivery of its groups would. Callers bound the wait.
        """
        assert self.probe_groups, "Hub.start() was not awaited"
        token = uuid.uuid4().hex
        arrived = asyncio.get_running_loop().create_future()
        self._probes[token] = arrived
        try:
            # The embedded layer would send a process that looks like a command through the
            # outbox; a probe is the hub's own and must stay in this process.
            send = getattr(self.layer, "group_send_here", self.layer.group_send)
            await send(self.probe_groups[shard], {"type": PROBE, "token": token})
            await arrived
        finally:
            self._probes.pop(token, None)

    def _probe_arrived(self, message: dict[str, Any]) -> None:
        arrived = self._probes.get(message.get("token", ""))
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    # --- delivery --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub receive failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if self._fallbacks and self._fallback_copy(message):
                continue
            try:
                self.dispatch(message)
            except Exception:
                logger.exception("hub could not deliver a %s message", message.get("type"))

    def dispatch_fallback(self, message: dict[str, Any]) -> None:
        """Deliver a message the layer refused or did not confirm to this instance's members.

        A PUBLISH that timed out against a frozen Redis still runs when Redis resumes; its copy
        arriving through the subscription is then dropped, so local members get it once.
        """
        if len(self._fallbacks) >= FALLBACK_MEMORY:
            for key in list(itertools.islice(self._fallbacks, FALLBACK_MEMORY // 2)):
                del self._fallbacks[key]
        self._fallbacks[_message_key(message)] = None
        self.dispatch(message)

    def _fallback_copy(self, message: dict[str, Any]) -> bool:
        key = _message_key(message)
        if key in self._fallbacks:
            del self._fallbacks[key]
            return True
        return False

    def dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == EVENT:
            self.deliver(message)
        elif kind == CONTROL:
            self._control(message)
        elif kind == PROBE:
            self._probe_arrived(message)

    def deliver(self, message: dict[str, Any]) -> int:
        """Write one broadcast to every local member it is meant for; returns the count."""
        members = self._members.get(message["group"])
        if not members:
            return 0
        observer = message.get("observe")
        if observer is not None and observer in self._observers:
            self._observers[observer](message)
        sent_at = message.get("sent_at")
        if sent_at:
            metrics.BROADCAST_LATENCY.observe(max(0.0, time.time() - sent_at))
        endpoints = message.get("endpoints")
        exclude_user = message.get("exclude_user")
        exclude_connection = message.get("exclude_connection")
        filter_name = message.get("filter")
        too_slow: list[Connection] = []
        reached: Iterable[Connection]
        stream = message.get("stream")
        if stream is not None and not (endpoints or exclude_user or filter_name):
            # A frame of a recoverable stream: each connection may drop or hold it (recovery).
            frame = OutboundFrame(message["text"])
            offset = message["offset"]
            reached = [conn for conn in members if conn.id != exclude_connection]
            for conn in reached:
                if not conn.deliver_stream(frame, stream, offset):
                    too_slow.append(conn)
        elif not (endpoints or exclude_user or exclude_connection or filter_name):
            # The hot path: every member gets the same prepared frame.
            frame = OutboundFrame(message["text"])
            for conn in members:
                if not conn.deliver(frame):
                    too_slow.append(conn)
            reached = members
        else:
            filtered: list[Connection] = []
            broadcast_filter = self._filters.get(filter_name) if filter_name else None
            filter_args = message.get("filter_args")
            frames: dict[str, OutboundFrame] = {}
            for conn in members:
                if endpoints is not None and conn.endpoint not in endpoints:
                    continue
                if exclude_user is not None and conn.user_id == exclude_user:
                    continue
                if exclude_connection is not None and conn.id == exclude_connection:
                    continue
                key = "text" if broadcast_filter is None else broadcast_filter(conn, filter_args)
                if key is None:
                    continue
                chosen = frames.get(key)
                if chosen is None:
                    chosen = frames[key] = OutboundFrame(message[key])
                if not conn.deliver(chosen):
                    too_slow.append(conn)
                filtered.append(conn)
            reached = filtered
        delivered = len(reached)
        if delivered:
            self.delivered += delivered
            group = message["group"]
            event_type = message.get("event_type", "other")
            if group.startswith("user."):  # a user's connections span endpoints: count each
                for endpoint, count in Counter(conn.endpoint for conn in reached).items():
                    metrics.frames_out(endpoint, event_type, count)
            else:  # every other group belongs to one endpoint, named first
                metrics.frames_out(group.split(".", 1)[0], event_type, delivered)
        for conn in too_slow:
            conn.close_slow()
        return delivered

    def _control(self, message: dict[str, Any]) -> None:
        """Run a control's handler for its local targets: the named connections, else the group's."""
        handler = self._control_handlers.get(message.get("op", ""))
        if handler is None:
            return
        named = message.get("connections")
        members: Iterable[Connection] | None
        if named is not None:
            members = [conn for conn_id in named if (conn := self.connections.get(conn_id)) is not None]
        else:
            members = self._members.get(message["group"])
        if not members:
            return
        endpoints = message.get("endpoints")
        for conn in list(members):
            if endpoints is None or conn.endpoint in endpoints:
                handler(conn, message)
