"""The hub and transports in isolation: subscriptions follow local membership, one prepared
frame per broadcast, receiver-side filters and observers, and slow clients detected by both
transports."""

from __future__ import annotations

import asyncio
import functools

import pytest

from realtime import groups
from realtime.connection import Connection, ConnectionUser
from realtime.hub import EVENT, Hub
from realtime.shards import LayerShards
from realtime.transport import DaphneTransport, OutboundFrame, QueuedTransport


class FakeLayer:
    """Counts what the hub asks of the channel layer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.queue: asyncio.Queue = asyncio.Queue()

    async def new_channel(self, prefix: str = "") -> str:
        return f"{prefix}test"

    async def group_add(self, group: str, channel: str) -> None:
        self.calls.append(("add", group))

    async def group_discard(self, group: str, channel: str) -> None:
        self.calls.append(("discard", group))

    async def receive(self, channel: str):
        return await self.queue.get()


class RecordingTransport:
    def __init__(self, accept: bool = True) -> None:
        self.frames: list[OutboundFrame] = []
        self.accept = accept
        self.closed: list[int] = []
        self.aborted = False

    def write(self, frame: OutboundFrame) -> bool:
        self.frames.append(frame)
        return self.accept

    def close_now(self, code: int) -> None:
        self.closed.append(code)

    def abort(self) -> None:
        self.aborted = True

    def stop_reading(self) -> None:
        return None

    def pending_bytes(self) -> int:
        return 0


def connection(name: str, endpoint: str = "chat", user: str | None = None, accept: bool = True) -> Connection:
    return Connection(
        connection_id=name,
        endpoint=endpoint,
        user=ConnectionUser(id=user, username=user) if user is not None else None,
        client_addr="127.0.0.1",
        transport=RecordingTransport(accept),
        token_expires_at=None,
    )


CLUSTER = groups.instances()  # every hub joins it at start (cluster-wide controls)


def own_calls(hub) -> list[tuple[str, str]]:
    """The layer calls for connections' groups (not the hub's own: cluster controls, probes)."""
    return [call for call in hub.layer.calls if call[1] not in hub.own_groups]


@pytest.fixture
async def hub():
    layer = FakeLayer()
    hub = Hub(layer, "test-instance")
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_group_is_subscribed_once_and_dropped_with_its_last_member(hub):
    conns = [connection(f"c{i}") for i in range(50)]
    for conn in conns:
        hub.add(conn)
    await asyncio.gather(*[hub.join(conn, ["chat.global"]) for conn in conns])
    assert own_calls(hub) == [("add", "chat.global")]
    for conn in conns[:-1]:
        hub.remove(conn)
    await asyncio.sleep(0.05)
    assert own_calls(hub) == [("add", "chat.global")]
    hub.remove(conns[-1])
    await asyncio.sleep(0.05)
    assert own_calls(hub) == [("add", "chat.global"), ("discard", "chat.global")]
    assert hub.subscribed_groups == hub.own_groups


async def test_a_join_and_leave_before_the_subscriber_runs_costs_nothing(hub):
    conn = connection("c")
    hub.add(conn)
    joining = asyncio.ensure_future(hub.join(conn, ["user.x"]))
    await asyncio.sleep(0)  # the join has registered its wish and waits for the subscriber
    hub.leave(conn, ["user.x"])
    await joining
    await asyncio.sleep(0.05)
    # Either nothing happened or an add was undone; no subscription is left behind.
    assert hub.subscribed_groups == hub.own_groups
    assert own_calls(hub) in ([], [("add", "user.x"), ("discard", "user.x")])


async def test_one_prepared_frame_is_shared_by_every_member(hub):
    conns = [connection(f"c{i}") for i in range(3)]
    for conn in conns:
        hub.add(conn)
        await hub.join(conn, ["chat.global"])
    delivered = hub.deliver({"type": EVENT, "group": "chat.global", "text": '{"type":"x"}', "event_type": "x"})
    assert delivered == 3
    frames = [conn.transport.frames[0] for conn in conns]
    assert all(frame is frames[0] for frame in frames)
    assert all(conn.frames_out == 1 for conn in conns)


async def test_exclusions_endpoints_and_filters(hub):
    alice_chat = connection("a1", "chat", "alice")
    alice_game = connection("a2", "game", "alice")
    bob_chat = connection("b1", "chat", "bob")
    for conn in (alice_chat, alice_game, bob_chat):
        hub.add(conn)
        await hub.join(conn, ["g"])
    base = {"type": EVENT, "group": "g", "text": "{}", "event_type": "x"}
    assert hub.deliver({**base, "exclude_user": "alice"}) == 1
    assert hub.deliver({**base, "exclude_connection": "a1"}) == 2
    assert hub.deliver({**base, "endpoints": ["game"]}) == 1
    hub.register_filter("odd", lambda conn, args: "other" if conn.id == args else None)
    assert hub.deliver({**base, "filter": "odd", "filter_args": "b1", "other": '{"alt":1}'}) == 1
    assert bob_chat.transport.frames[-1].text == '{"alt":1}'


async def test_an_observer_is_told_once_per_broadcast_that_reaches_members(hub):
    seen = []
    hub.register_observer("rounds", lambda message: seen.append(message["observe_args"]))
    for name in ("a", "b"):
        conn = connection(name)
        hub.add(conn)
        await hub.join(conn, ["g"])
    base = {"type": EVENT, "text": "{}", "event_type": "x", "observe": "rounds", "observe_args": [1]}
    assert hub.deliver({**base, "group": "g"}) == 2
    assert hub.deliver({**base, "group": "nobody-here"}) == 0
    assert seen == [[1]]


async def test_a_slow_member_is_reported_and_the_others_still_get_the_frame(hub):
    slow = connection("slow", accept=False)
    fine = connection("fine")
    for conn in (slow, fine):
        hub.add(conn)
        await hub.join(conn, ["g"])
    hub.deliver({"type": EVENT, "group": "g", "text": "{}", "event_type": "x"})
    assert len(fine.transport.frames) == 1
    assert slow.closing and not fine.closing  # closed with 4413, dropped if it does not read even that
    assert slow.transport.closed == [4413]


# --- a channel layer on several Redis servers ------------------------------------------------------

LAYOUT = LayerShards(count=2, prefix="rpgrt")


class ShardedLayer(FakeLayer):
    """A layer whose server `down` refuses subscriptions, and whose first channels land on it."""

    def __init__(self, down: int | None, refused_channels: int = 0) -> None:
        super().__init__()
        self.down = down
        self.refused_channels = refused_channels

    async def new_channel(self, prefix: str = "") -> str:
        if self.refused_channels:
            self.refused_channels -= 1
            raise ConnectionError("the server this name hashes to is down")
        return await super().new_channel(prefix)

    async def group_add(self, group: str, channel: str) -> None:
        if LAYOUT.of(group) == self.down:
            raise ConnectionError("down")
        await super().group_add(group, channel)


async def test_a_layer_server_that_is_down_holds_up_only_its_own_groups():
    down = LAYOUT.of("chat.global")
    layer = ShardedLayer(down, refused_channels=2)
    hub = Hub(layer, "test-instance", LAYOUT)
    await hub.start()  # its channel found a server that answers
    try:
        assert [LAYOUT.of(group) for group in hub.probe_groups] == [0, 1]
        conn = connection("c")
        hub.add(conn)
        elsewhere = next(group for n in range(100) if LAYOUT.of(group := f"user.{n}") != down)
        await hub.join(conn, ["chat.global", elsewhere], wait=0.5)
        assert elsewhere in hub.subscribed_groups and "chat.global" not in hub.subscribed_groups
        layer.down = None  # the server is back: its groups follow within the retry backoff
        for _ in range(100):
            if "chat.global" in hub.subscribed_groups:
                break
            await asyncio.sleep(0.02)
        assert hub.subscribed_groups == {"chat.global", elsewhere, *hub.own_groups}
    finally:
        await hub.stop()


def test_a_group_on_each_server_is_found_for_any_layout():
    for count in (1, 2, 3, 16):
        layout = LayerShards(count=count, prefix="rpgrt")
        assert [layout.of(layout.group_on("probe.x", shard)) for shard in range(count)] == list(range(count))
    with pytest.raises(ValueError):
        LAYOUT.group_on("probe.x", 2)


async def test_the_queued_transport_keeps_order_bounds_memory_and_closes_last():
    sent: list[dict] = []
    release = asyncio.Event()

    async def send(message):
        await release.wait()
        sent.append(message)

    transport = QueuedTransport(send, limit=10)
    assert transport.write(OutboundFrame("12345")) is True
    assert transport.write(OutboundFrame("67890")) is True
    assert transport.write(OutboundFrame("x")) is False  # 11 bytes waiting: over the limit
    closing = asyncio.ensure_future(transport.close(4000))
    release.set()
    await closing
    assert [m.get("text") for m in sent[:3]] == ["12345", "67890", "x"]
    assert sent[-1] == {"type": "websocket.close", "code": 4000}
    assert transport.pending_bytes() == 0


class FakeTwistedTransport:
    """What DaphneTransport reads of Twisted's TCP transport."""

    def __init__(self) -> None:
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.written: list[bytes] = []
        self.connected = True
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self._tempDataLen += len(data)


class FakeSocket:
    def __init__(self, accept_bytes: int) -> None:
        self.accept_bytes = accept_bytes
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        taken = bytes(data[: self.accept_bytes])
        self.sent.append(taken)
        return len(taken)


class FakeAutobahnProtocol:
    STATE_OPEN = 1
    state = 1
    _perMessageCompress = None

    def __init__(self) -> None:
        self.transport = FakeTwistedTransport()
        self.send_queue: list = []

    def sendPreparedMessage(self, message) -> None:  # marks it as an autobahn protocol
        raise AssertionError("not used")


def daphne_transport(accept_bytes: int, limit: int = 100):
    protocol = FakeAutobahnProtocol()

    async def handle_reply(proto, message):
        return None

    transport = DaphneTransport(functools.partial(handle_reply, protocol), limit)
    transport._socket = FakeSocket(accept_bytes)
    return transport, protocol


def test_daphne_transport_writes_straight_to_the_socket_when_nothing_waits():
    transport, protocol = daphne_transport(accept_bytes=10_000)
    frame = OutboundFrame('{"type":"x"}')
    assert transport.write(frame) is True
    assert transport._socket.sent == [frame.wire] and protocol.transport.written == []
    assert frame.wire[0] == 0x81 and frame.wire[1] == len(frame.text)  # FIN + text, unmasked


def test_daphne_transport_hands_the_rest_to_twisted_and_keeps_order():
    transport, protocol = daphne_transport(accept_bytes=4)
    first, second = OutboundFrame('{"n":1}'), OutboundFrame('{"n":2}')
    transport.write(first)
    assert transport._socket.sent == [first.wire[:4]] and protocol.transport.written == [first.wire[4:]]
    transport.write(second)  # Twisted still holds bytes: the next frame must queue behind them
    assert len(transport._socket.sent) == 1 and protocol.transport.written[-1] == second.wire


def test_daphne_transport_reports_a_client_that_stopped_reading():
    transport, protocol = daphne_transport(accept_bytes=0, limit=50)
    frame = OutboundFrame("x" * 30)
    assert transport.write(frame) is True  # 32 bytes waiting
    assert transport.write(frame) is False  # 64 bytes waiting: over the limit
    assert transport.pending_bytes() == 64


def test_daphne_transport_detaches_the_http_channel_of_the_upgrade():
    class Channel:
        def __init__(self) -> None:
            self.requests = ["the upgrade request"]
            self.timeout = 43200

        def setTimeout(self, period):
            self.timeout = period

    protocol = FakeAutobahnProtocol()
    channel = protocol.transport.producer = Channel()
    protocol.transport.unregisterProducer = lambda: setattr(protocol.transport, "producer", None)

    async def handle_reply(proto, message):
        return None

    DaphneTransport(functools.partial(handle_reply, protocol), 100)
    assert channel.timeout is None  # its idle timer would have closed the WebSocket
    assert protocol.transport.producer is None and channel.requests == []
