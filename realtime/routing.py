"""WebSocket routes: /ws/<endpoint> -> consumer (docs/protocol.md §1); anything else is refused."""

from django.urls import path, re_path

from realtime.consumers.chat import ChatConsumer
from realtime.consumers.combat import CombatConsumer
from realtime.consumers.game import GameConsumer
from realtime.consumers.world import WorldConsumer


async def refuse_unknown_path(scope, receive, send):
    """Unknown WebSocket paths get a refused handshake (HTTP 403), not a server error."""
    await receive()
    await send({"type": "websocket.close"})


websocket_urlpatterns = [
    path("ws/game", GameConsumer.as_asgi()),
    path("ws/chat", ChatConsumer.as_asgi()),
    path("ws/combat", CombatConsumer.as_asgi()),
    path("ws/world", WorldConsumer.as_asgi()),
    re_path(r"^.*$", refuse_unknown_path),
]
