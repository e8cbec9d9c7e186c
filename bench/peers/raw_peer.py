"""The limit for the connect benchmark: a bare `websockets` server in Python that does only what a
connect must — verify the JWT, answer with `connection_established` — with nothing else (no
database, no Redis, no presence). Where rpgrealtime stands between it and python-socketio says
how much of a connect's cost is the framework's.

    python -m bench.peers.raw_peer --port 9001 --secret …
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.peers.process import PeerProcess


async def serve(port: int, secret: str) -> None:
    import jwt
    from websockets.asyncio.server import serve as websockets_serve

    async def handler(connection) -> None:
        query = connection.request.path.partition("?")[2]
        token = dict(part.partition("=")[::2] for part in query.split("&") if part).get("token", "")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            await connection.close(4401, "invalid token")
            return
        await connection.send(json.dumps({"type": "connection_established", "user": {"id": claims.get("user_id")}}))
        async for message in connection:
            if '"ping"' in message:
                await connection.send('{"type":"pong"}')

    async with websockets_serve(handler, "127.0.0.1", port, backlog=1024, ping_interval=None):
        await asyncio.get_running_loop().create_future()


class RawPeerProcess(PeerProcess):
    """One process of the bare peer."""

    module = "bench.peers.raw_peer"

    def __init__(self, name: str, *, secret: str) -> None:
        super().__init__(name, ["--secret", secret])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.secret))


if __name__ == "__main__":
    main()
