"""Reference peer for the fan-out benchmark: python-socketio with AsyncRedisManager on uvicorn.

It does the same job as rpgrealtime's global chat: clients authenticate with the same JWTs and
join one room; a client's "chat" event is broadcast to that room on every instance through Redis.

    python -m bench.peers.socketio_peer --port 9001 --redis redis://127.0.0.1:6390/0 --secret …
"""

from __future__ import annotations

import argparse

from bench.peers.process import PeerProcess


def build_app(redis_url: str, secret: str):
    import jwt
    import socketio

    manager = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")

    @sio.event
    async def connect(sid, environ, auth):
        try:
            claims = jwt.decode((auth or {}).get("token", ""), secret, algorithms=["HS256"])
        except jwt.PyJWTError as exc:
            raise socketio.exceptions.ConnectionRefusedError("invalid token") from exc
        await sio.save_session(sid, {"user_id": claims.get("user_id")})
        await sio.enter_room(sid, "global")

    @sio.on("chat")
    async def chat(sid, data):
        session = await sio.get_session(sid)
        await sio.emit(
            "chat_message",
            {"type": "chat_message", "user_id": session["user_id"], "channel": "global", "content": data["content"]},
            room="global",
        )

    return socketio.ASGIApp(sio)


class SocketioPeerProcess(PeerProcess):
    """One process of the python-socketio peer."""

    module = "bench.peers.socketio_peer"
    scheme = "http"  # the load generator's Socket.IO client speaks HTTP first
    settle_seconds = 0.5

    def __init__(self, name: str, *, redis_url: str, secret: str) -> None:
        super().__init__(name, ["--redis", redis_url, "--secret", secret])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(build_app(args.redis, args.secret), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
