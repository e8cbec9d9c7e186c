"""A Python client for rpgrealtime's WebSocket endpoints (asyncio, `websockets`); no Django needed.

    from rpgrealtime.client import RealtimeClient

    async with RealtimeClient("wss://host/ws/chat", get_token=lambda reason: token) as chat:
        chat.on("chat_message", print)
        await chat.request({"type": "chat_message", "channel": "global", "content": "hi"})

See docs/clients.md for the connection lifecycle, the close-code rules and stream recovery.
"""

from rpgrealtime.client.connection import (
    CloseEvent,
    ConnectionRefused,
    RealtimeClient,
    ServerError,
    StateEvent,
)
from rpgrealtime.client.rules import Backoff, CloseCode, close_action
from rpgrealtime.client.streams import Resync, StreamTracker
from rpgrealtime.client.tokens import jwt_claims, renewal_delay

__all__ = [
    "Backoff",
    "CloseCode",
    "CloseEvent",
    "ConnectionRefused",
    "RealtimeClient",
    "Resync",
    "ServerError",
    "StateEvent",
    "StreamTracker",
    "close_action",
    "jwt_claims",
    "renewal_delay",
]
