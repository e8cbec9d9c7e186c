"""Fail loudly when Twisted, autobahn or daphne change the internals `realtime/transport.py` uses.

The fan-out path writes prepared WebSocket frames straight to daphne's socket and measures
Twisted's write buffer itself; `realtime/server_hooks.py` patches daphne's access log and hooks
into its reactor. None of that is public API, and a change in any of the three libraries would
otherwise show only as slower delivery, leaked handshakes or lost close codes. Each check here
names the library and the attribute, and is made on the real classes and live objects.
"""

from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys

import autobahn.websocket.protocol as autobahn_protocol
import daphne.server
import daphne.ws_protocol
import pytest
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage
from daphne.access import AccessLogGenerator
from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor
from twisted.web.http import HTTPChannel
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from realtime.server_hooks import _CONNECTION_MADE, _Pretty, pformat_lazily_for_connection_made
from tests.support.cluster import ROOT, free_port, wait_for_port


def test_autobahn_prepared_message_is_a_complete_unmasked_text_frame():

    prepared = PreparedMessage(b"hello", False, False, True)
    assert hasattr(prepared, "payloadHybi"), "autobahn: PreparedMessage(...).payloadHybi is gone (OutboundFrame.wire)"
    assert prepared.payloadHybi == b"\x81\x05hello", (
        "autobahn: PreparedMessage(...).payloadHybi is no longer the complete frame (FIN, text opcode, no mask)"
    )


def test_autobahn_server_protocol_has_the_methods_and_states_used():

    for name in ("sendPreparedMessage", "sendCloseFrame", "sendMessage", "STATE_OPEN"):
        assert hasattr(WebSocketServerProtocol, name), f"autobahn: WebSocketServerProtocol.{name} is gone"
    parameters = inspect.signature(WebSocketServerProtocol.sendCloseFrame).parameters
    assert {"code", "isReply"} <= set(parameters), (
        f"autobahn: sendCloseFrame() no longer takes code= and isReply= (has {list(parameters)})"
    )


def test_daphne_modules_and_classes_are_where_the_hooks_look():

    assert issubclass(daphne.ws_protocol.WebSocketProtocol, WebSocketServerProtocol), (
        "daphne: ws_protocol.WebSocketProtocol no longer subclasses autobahn's WebSocketServerProtocol"
    )
    assert callable(getattr(daphne.ws_protocol.WebSocketProtocol, "onMessage", None)), (
        "daphne: WebSocketProtocol.onMessage is gone"
    )
    assert hasattr(daphne.server, "Server"), "daphne: daphne.server.Server is gone (install_daphne_hooks)"
    parameters = list(inspect.signature(AccessLogGenerator.write_entry).parameters)
    assert parameters[:4] == ["self", "host", "date", "request"], (
        f"daphne: AccessLogGenerator.write_entry no longer takes (host, date, request, …): {parameters}"
    )


def test_twisted_tcp_transport_exposes_its_socket_and_write_buffer():

    left, right = socket.socketpair()
    try:
        # A real tcp.Server around one end of a socket pair; MemoryReactor keeps the global reactor out.
        server = tcp.Server(left, Protocol(), ("127.0.0.1", 1), None, 1, MemoryReactor())
        for name in ("socket", "dataBuffer", "offset", "_tempDataLen", "connected", "disconnecting", "TLS"):
            assert hasattr(server, name), f"Twisted: tcp.Server instances have no attribute {name!r}"
        for name in ("abortConnection", "unregisterProducer", "registerProducer", "write"):
            assert callable(getattr(server, name, None)), f"Twisted: tcp.Server.{name}() is gone"
        assert server.socket is left, "Twisted: tcp.Server.socket is not the connection's socket"
        assert server.TLS is False, "Twisted: a plain tcp.Server claims TLS"
        before = len(server.dataBuffer) - server.offset + server._tempDataLen
        server.write(b"x" * 1000)
        after = len(server.dataBuffer) - server.offset + server._tempDataLen
        assert after - before == 1000, (
            "Twisted: dataBuffer - offset + _tempDataLen no longer counts the bytes waiting to be written"
        )
    finally:
        left.close()
        right.close()


def test_twisted_http_channel_has_the_request_list_and_idle_timer():

    channel = HTTPChannel()
    assert isinstance(getattr(channel, "requests", None), list), "Twisted web: HTTPChannel.requests is gone"
    assert callable(getattr(channel, "setTimeout", None)), "Twisted web: HTTPChannel.setTimeout() is gone"


@pytest.mark.integration
def test_a_live_daphne_connection_has_every_internal_and_they_behave():
    """Under a real daphne: the objects behind an open WebSocket, and frames written through them."""

    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "tests.support.transport_probe:application",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        with connect(f"ws://127.0.0.1:{port}/ws/probe", open_timeout=10) as client:
            report = json.loads(client.recv(timeout=10))
            assert not report["problems"], "internals realtime/transport.py relies on changed:\n" + "\n".join(
                report["problems"]
            )
            assert report["transport"] == "twisted.internet.tcp.Server", (
                f"daphne: connections are no longer on a plain Twisted tcp.Server but {report['transport']}"
            )
            buffered = json.loads(client.recv(timeout=10))
            direct = json.loads(client.recv(timeout=10))
            assert buffered == {"path": "buffered"}
            assert direct["path"] == "socket", "a frame written to the raw socket did not arrive whole and in order"
            assert direct["pending_growth"] == direct["frame_size"], (
                "Twisted: the pending-bytes formula no longer grows by what transport.write() queued"
            )
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, (
                "autobahn: sendCloseFrame(code=1001, isReply=False) no longer closes with 1001"
            )
    finally:
        process.terminate()
        process.wait(20)


def test_autobahn_pretty_prints_the_configuration_where_the_lazy_replacement_expects():
    """`server_hooks` formats autobahn's per-connection debug line lazily: the call must still be
    made from `_connectionMade` through the module's `pformat`, and other callers get text."""
    source = inspect.getsource(autobahn_protocol.WebSocketProtocol._connectionMade)
    assert "pformat(configAttrLog)" in source, "autobahn: _connectionMade no longer pretty-prints its configuration"
    assert _CONNECTION_MADE is autobahn_protocol.WebSocketProtocol._connectionMade.__code__
    assert pformat_lazily_for_connection_made({"a": [1, 2]}) == "{'a': [1, 2]}"
    assert (
        "{x}".format(x=_Pretty([("openHandshakeTimeout", 5, "Factory")])) == "[('openHandshakeTimeout', 5, 'Factory')]"
    )
