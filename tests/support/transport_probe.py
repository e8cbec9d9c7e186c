"""An ASGI app that daphne serves for tests/test_transport_internals.py.

`realtime/transport.py` writes prepared frames straight to daphne's socket, reading private
attributes of daphne, autobahn and Twisted objects. This app gets those live objects the way
the transport does (daphne's `send` is a partial of the connection's protocol), lists every
attribute that is missing, then uses the internals as the transport does — a frame through
Twisted's buffer, the buffer measured, a frame written to the socket, a close frame — so the
test client can check what arrives. It imports nothing from the project.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import sys
from typing import Any

from autobahn.websocket.protocol import PreparedMessage

# (attribute, what realtime/transport.py does with it) on the WebSocket protocol instance.
PROTOCOL_ATTRIBUTES = (
    ("sendPreparedMessage", "DaphneTransport.supports() recognises daphne by it"),
    ("sendCloseFrame", "close_now() sends 1001, which autobahn's public sendClose() refuses"),
    ("send_queue", "write() goes to the socket only when autobahn has nothing queued"),
    ("_perMessageCompress", "write() falls back to sendMessage when compression was negotiated"),
    ("state", "write() and close_now() act only on open connections"),
    ("STATE_OPEN", "compared with `state`"),
    ("transport", "the Twisted TCP transport"),
    ("application_queue", "daphne's per-connection input queue (limits on arrival)"),
    ("onMessage", "daphne's handler of each received message (limits on arrival)"),
    # The parsed handshake, released once the connection is open (_release_handshake).
    ("http_request_data", "released after the handshake"),
    ("http_headers", "released after the handshake"),
    ("http_request_params", "released after the handshake"),
    ("http_status_line", "released after the handshake"),
    ("request", "its headers and params are released after the handshake"),
    ("_raw_query_string", "released after the handshake (it may hold a token)"),
)
TCP_ATTRIBUTES = (
    ("socket", "write() sends on it directly"),
    ("dataBuffer", "bytes Twisted holds (_twisted_pending)"),
    ("offset", "bytes of dataBuffer already sent (_twisted_pending)"),
    ("_tempDataLen", "bytes written since the last flush (_twisted_pending)"),
    ("connected", "write() skips closed transports"),
    ("disconnecting", "write() skips closing transports"),
    ("abortConnection", "abort() drops a client too slow to read a close frame"),
    ("TLS", "TLS transports must go through Twisted, never the raw socket"),
    ("producer", "the HTTPChannel that carried the upgrade (_release_http_channel)"),
    ("unregisterProducer", "detaches that channel (_release_http_channel)"),
    ("write", "frames queued behind unsent bytes"),
)
CHANNEL_ATTRIBUTES = (
    ("requests", "the handshake's request objects, dropped (_release_http_channel)"),
    ("setTimeout", "its 12-hour idle timer, turned off (_release_http_channel)"),
)


def missing(owner: Any, attributes: tuple[tuple[str, str], ...], library: str) -> list[str]:
    kind = f"{type(owner).__module__}.{type(owner).__qualname__}"
    return [
        f"{library}: {kind} has no attribute {name!r} ({why})" for name, why in attributes if not hasattr(owner, name)
    ]


def pending(tcp: Any) -> int:
    return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    protocol = send.args[0] if isinstance(send, functools.partial) and send.args else None
    if protocol is None:
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps({"problems": [f"daphne: send is {send!r}, not a partial of the protocol"]}),
            }
        )
        return
    for _ in range(200):  # the handshake completes on a later turn of the loop
        if getattr(protocol, "state", None) == getattr(protocol, "STATE_OPEN", object()):
            break
        await asyncio.sleep(0.01)

    tcp = getattr(protocol, "transport", None)
    channel = getattr(tcp, "producer", None)
    problems = missing(protocol, PROTOCOL_ATTRIBUTES, "autobahn/daphne")
    problems += missing(tcp, TCP_ATTRIBUTES, "Twisted")
    problems += missing(channel, CHANNEL_ATTRIBUTES, "Twisted web")
    if getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", None):
        problems.append("autobahn: the protocol never reached STATE_OPEN after websocket.accept")
    if not isinstance(getattr(tcp, "socket", None), socket.socket):
        problems.append(f"Twisted: transport.socket is {getattr(tcp, 'socket', None)!r}, not a socket")
    for module in ("daphne.server", "twisted.internet.reactor"):
        if module not in sys.modules:
            problems.append(f"daphne: module {module} is not loaded under daphne (server_hooks.install_daphne_hooks)")
    facts = {"problems": problems, "transport": f"{type(tcp).__module__}.{type(tcp).__qualname__}"}
    await send({"type": "websocket.send", "text": json.dumps(facts)})
    if problems:
        return

    # Through Twisted's buffer: the pending count must grow by exactly the frame's size.
    before = pending(tcp)
    buffered = PreparedMessage(json.dumps({"path": "buffered"}).encode(), False, False, True).payloadHybi
    tcp.write(buffered)
    grown = pending(tcp) - before
    # Once Twisted has written everything, straight to the socket, as DaphneTransport.write does.
    for _ in range(500):
        if pending(tcp) == 0 and not protocol.send_queue:
            break
        await asyncio.sleep(0.01)
    direct = PreparedMessage(
        json.dumps({"path": "socket", "pending_growth": grown, "frame_size": len(buffered)}).encode(),
        False,
        False,
        True,
    ).payloadHybi
    sent = tcp.socket.send(direct)
    if sent < len(direct):
        tcp.write(direct[sent:])
    protocol.sendCloseFrame(code=1001, isReply=False)
    await asyncio.sleep(1)
