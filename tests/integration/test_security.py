"""Security review against real daphne processes started as production starts them (the serve
command's WebSocket size limits): tokens out of the access log, Origin and Host checks on the
handshake, frames over 1 MiB refused by the transport, connection caps per address and per user
across instances, and the token route's brute-force limit shared by instances through Redis.

This module starts its own cluster with its own limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request

import pytest
import websockets

from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.faults import raw_handshake
from tests.support.users import PASSWORD, access_token, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# What the Dockerfile and scripts/serve pass to daphne (docs/operations.md).
DAPHNE_LIMITS = ["--websocket-max-message-size", "1048576", "--websocket-max-frame-size", "1048576"]
ORIGIN = "https://game.example.com"
ENV = {
    "WEBSOCKET_ALLOWED_ORIGINS": ORIGIN,
    "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "3",
    "WEBSOCKET_MAX_CONNECTIONS_PER_IP": "6",
    "AUTH_TOKEN_THROTTLE": "5/min",
}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def secured(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=2, env=ENV)
        for server in cluster.servers:
            server.daphne_args = list(DAPHNE_LIMITS)
        cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def player() -> tuple[str, str]:
    """A user made directly in the database (the token route is throttled in this module)."""
    user = await db(make_user)()
    return str(user.pk), access_token(user)


async def test_tokens_stay_out_of_the_access_log_and_the_application_log(secured):
    a = secured[0]
    _, token = await player()
    client = await WsClient.open(f"{a.ws}/ws/chat", token)  # ?token=<jwt>
    await client.request({"type": "ping"})
    await client.close()
    bogus = "eyJhbGciOiJIUzI1NiJ9.eyJib2d1cyI6MX0.bm90LWEtcmVhbC1zaWduYXR1cmU"
    refused = await WsClient.open(f"{a.ws}/ws/game", bogus, expect_established=False)
    assert (await refused.recv())["code"] == "invalid_token"
    await asyncio.to_thread(a.request, "GET", f"/api/v1/auth/me/?token={token}", None, None)
    await asyncio.sleep(0.5)
    log = a.log_text()
    assert '"WSCONNECT /ws/chat"' in log  # the access log is on, and logs the path alone
    assert token not in log and bogus not in log
    assert token.split(".")[2] not in log  # not even the signature


async def test_origin_is_checked_on_the_handshake(secured):
    a = secured[0]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{a.ws}/ws/game", origin="https://evil.example", open_timeout=10)
    assert refused.value.response.status_code == 403
    allowed = await websockets.connect(f"{a.ws}/ws/game", origin=ORIGIN, open_timeout=10)
    assert json.loads(await allowed.recv())["type"] == "connection_established"
    await allowed.close()
    native = await WsClient.open(f"{a.ws}/ws/game")  # no Origin at all: not a browser
    await native.close()


async def test_hosts_outside_allowed_hosts_are_refused_on_http_and_handshakes(secured):
    a = secured[0]

    def get(host: str) -> int:
        request = urllib.request.Request(f"{a.http}/api/v1/websocket/health", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(get, "evil.example") == 400
    assert await asyncio.to_thread(get, f"127.0.0.1:{a.port}") == 200
    status = await asyncio.to_thread(raw_handshake, a, "/ws/game", {"Host": "evil.example"})
    assert " 403 " in status, status
    status = await asyncio.to_thread(raw_handshake, a, "/ws/game", {"Host": f"localhost:{a.port}"})
    assert " 101 " in status, status


async def test_frames_over_one_mebibyte_are_refused_by_the_transport(secured):
    a = secured[0]
    client = await WsClient.open(f"{a.ws}/ws/game")
    # Over WEBSOCKET_MAX_MESSAGE_BYTES but under 1 MiB: the application answers, the connection stays.
    await client.send(json.dumps({"type": "ping", "pad": "x" * 100_000}))
    assert (await client.recv())["code"] == "message_too_large"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    # One frame over 1 MiB: daphne fails the connection (close 1009) before the application
    # sees it. The client may get a reset instead of the close frame, even while its own send
    # is still draining (then the send itself raises).
    with contextlib.suppress(websockets.ConnectionClosed):
        await client.send(json.dumps({"type": "ping", "pad": "x" * (MiB + MiB // 2)}))
    assert await client.closed_with(10) in (1009, None)
    assert not [f for f in client.received if f.get("code") == "message_too_large"][1:]  # only the first one
    # The same size in small fragments: the message limit applies too.
    fragmented = await WsClient.open(f"{a.ws}/ws/game")
    with contextlib.suppress(websockets.ConnectionClosed):
        await fragmented.connection.send(iter(["x" * (256 * 1024)] * 8))
    assert await fragmented.closed_with(10) in (1009, None)
    assert [f["type"] for f in fragmented.received] == ["connection_established"]  # no answer: never got it
    assert (await asyncio.to_thread(a.request, "GET", "/api/v1/websocket/health"))[0] == 200


async def test_connections_are_capped_per_address_and_per_user_across_instances(secured):
    a, b = secured[0], secured[1]
    # Per address, per instance: six from 127.0.0.1 on B, the seventh is refused.
    anonymous = [await WsClient.open(f"{b.ws}/ws/game") for _ in range(6)]
    seventh = await WsClient.open(f"{b.ws}/ws/game", expect_established=False)
    assert (await seventh.recv())["code"] == "too_many_connections"
    assert await seventh.closed_with(5) == 4429
    for client in anonymous:
        await client.close()
    # Per user, across the cluster: three, wherever they are.
    _, token = await player()
    mine = [
        await WsClient.open(f"{a.ws}/ws/game", token),
        await WsClient.open(f"{a.ws}/ws/chat", token),
        await WsClient.open(f"{b.ws}/ws/world", token),
    ]
    fourth = await WsClient.open(f"{b.ws}/ws/chat", token, expect_established=False)
    assert (await fourth.recv())["code"] == "too_many_connections"
    assert await fourth.closed_with(5) == 4429
    for client in mine:
        await client.close()


async def test_the_token_route_limit_is_shared_by_the_instances(secured):
    a, b = secured[0], secured[1]
    user = await db(make_user)()

    def attempt(server, password: str) -> int:
        return server.request("POST", "/api/v1/auth/token/", {"username": user.username, "password": password})[0]

    # Five attempts a minute per address (AUTH_TOKEN_THROTTLE=5/min), counted in Redis.
    statuses = [await asyncio.to_thread(attempt, server, "guess") for server in (a, b, a, b, a)]
    assert statuses == [401] * 5
    assert await asyncio.to_thread(attempt, b, PASSWORD) == 429
    assert await asyncio.to_thread(attempt, a, PASSWORD) == 429
