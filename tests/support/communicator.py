"""In-process WebSocket clients (channels' WebsocketCommunicator) for the fast unit layer."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

from rpgrealtime.asgi import application
from tests.support.schema import check_server, endpoint_of


class Client:
    """A connected in-process client with JSON helpers."""

    def __init__(
        self, communicator: WebsocketCommunicator, established: dict[str, Any] | None, endpoint: str | None = None
    ) -> None:
        self.communicator = communicator
        self.endpoint = endpoint  # every frame read is checked against the protocol schema for it
        self.established = established
        self.subprotocol: str | None = None
        self.seen: list[dict[str, Any]] = []  # every frame read, in order (also those skipped)

    async def send(self, frame: Any) -> None:
        await self.communicator.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_to(bytes_data=data)

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        output = await self.communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            raise AssertionError(f"connection closed with {output.get('code')}")
        frame = json.loads(output["text"])
        self.seen.append(frame)
        check_server(frame, self.endpoint)
        return frame

    async def recv_type(self, frame_type: str, timeout: float = 2.0) -> dict[str, Any]:
        """Skip other frames (pings, presence) until one of `frame_type` arrives."""
        while True:
            frame = await self.recv(timeout)
            if frame.get("type") == frame_type:
                return frame

    async def request(self, frame: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """Send a frame with an id and return the direct reply carrying that id."""
        frame = {"id": frame.get("id", "req-1"), **frame}
        await self.send(frame)
        while True:
            reply = await self.recv(timeout)
            if reply.get("id") == frame["id"]:
                return reply

    async def expect_close(self, timeout: float = 2.0) -> int | None:
        while True:
            output = await self.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code")

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


async def connect(
    path: str,
    token: str | None = None,
    *,
    via: str = "query",
    headers: list[tuple[bytes, bytes]] | None = None,
    subprotocols: list[str] | None = None,
    expect_established: bool = True,
) -> Client:
    """Open an in-process connection; `via` chooses how the token travels (query/header/subprotocol)."""
    headers = list(headers or [])
    subprotocols = list(subprotocols or [])
    if token is not None:
        if via == "query":
            path = f"{path}{'&' if '?' in path else '?'}token={token}"
        elif via == "header":
            headers.append((b"authorization", f"Bearer {token}".encode()))
        elif via == "subprotocol":
            subprotocols = ["bearer", token]
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols or None)
    connected, subprotocol = await communicator.connect(timeout=5)
    if not connected:
        raise AssertionError(f"handshake refused: {subprotocol}")
    client = Client(communicator, None, endpoint_of(path))
    client.subprotocol = subprotocol
    if expect_established:
        frame = await client.recv()
        assert frame["type"] == "connection_established", frame
        client.established = frame
    return client


# The fields every frame of a recoverable stream carries (docs/protocol.md §12).
STREAM_KEYS = frozenset({"stream", "offset", "epoch"})


def unpositioned(frame: dict[str, Any]) -> dict[str, Any]:
    """The frame without its stream position (history pages carry none, for example)."""
    return {key: value for key, value in frame.items() if key not in STREAM_KEYS}
