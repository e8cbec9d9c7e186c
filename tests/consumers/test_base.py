"""docs/protocol.md §1–§3 on the in-process layer: auth outcomes, envelope, errors, limits, heartbeat."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from realtime.protocol import CloseCode
from realtime.runtime import current_runtime
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user, refresh_token

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINTS = ["/ws/game", "/ws/chat", "/ws/combat", "/ws/world"]
PUBLIC = ["/ws/game", "/ws/world"]
PROTECTED = ["/ws/chat", "/ws/combat"]


async def refused(path, token=None, **kwargs):
    client = await connect(path, token, expect_established=False, **kwargs)
    error = await client.recv()
    code = await client.expect_close()
    return error, code


# --- §1 connecting ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PUBLIC)
async def test_anonymous_allowed_on_public_endpoints(path):
    client = await connect(path)
    assert client.established["user"] is None
    assert client.established["endpoint"] == path.rsplit("/", 1)[1]
    assert client.established["heartbeat_interval"] == 30
    assert client.established["server_time"].endswith("Z")
    await client.close()


@pytest.mark.parametrize("path", PROTECTED)
async def test_anonymous_refused_on_protected_endpoints(path):
    error, code = await refused(path)
    assert error["type"] == "error" and error["code"] == "authentication_required"
    assert code == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize("via", ["query", "header", "subprotocol"])
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_token_accepted_three_ways(path, via):
    user = await db(make_user)()
    client = await connect(path, access_token(user), via=via)
    assert client.established["user"] == {"id": str(user.pk), "username": user.username}
    assert client.subprotocol == ("bearer" if via == "subprotocol" else None)
    await client.close()


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.invalidsig", ""],
)
async def test_invalid_token_refused_everywhere(path, token):
    error, code = await refused(path, token, via="header")
    assert error["code"] == "invalid_token"
    assert code == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize("path", PUBLIC)
async def test_refresh_token_is_not_an_access_token(path):
    user = await db(make_user)()
    error, code = await refused(path, refresh_token(user))
    assert (error["code"], code) == ("invalid_token", 4401)


@pytest.mark.parametrize("path", PUBLIC)
async def test_empty_query_token_is_invalid_not_anonymous(path):
    # `?token=` from a client that built the URL out of an empty variable: never a silent downgrade.
    error, code = await refused(path + "?token=")
    assert (error["code"], code) == ("invalid_token", 4401)


async def test_bearer_subprotocol_without_token_is_invalid():
    error, code = await refused("/ws/game", subprotocols=["bearer"])
    assert (error["code"], code) == ("invalid_token", 4401)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_expired_token(path):
    user = await db(make_user)()
    error, code = await refused(path, access_token(user, lifetime=timedelta(seconds=-5)))
    assert (error["code"], code) == ("token_expired", 4401)


async def test_inactive_and_deleted_users_are_invalid():
    inactive = await db(make_user)(is_active=False)
    error, code = await refused("/ws/game", access_token(inactive))
    assert (error["code"], code) == ("invalid_token", 4401)
    gone = await db(make_user)()
    token = access_token(gone)
    await db(gone.delete)()
    error, code = await refused("/ws/world", token)
    assert (error["code"], code) == ("invalid_token", 4401)


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_banned_user_refused(path):
    user = await db(make_user)(banned_until=timezone.now() + timedelta(hours=1))
    error, code = await refused(path, access_token(user))
    assert (error["code"], code) == ("banned", CloseCode.FORBIDDEN)


async def test_expired_ban_lets_user_in():
    user = await db(make_user)(banned_until=timezone.now() - timedelta(seconds=1))
    client = await connect("/ws/chat", access_token(user))
    assert client.established["user"]["id"] == str(user.pk)
    await client.close()


async def test_disallowed_origin_refuses_handshake(settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = ["https://game.example.com"]
    with pytest.raises(AssertionError, match="handshake refused"):
        await connect("/ws/game", headers=[(b"origin", b"https://evil.example.com")])
    ok = await connect("/ws/game", headers=[(b"origin", b"https://game.example.com")])
    await ok.close()
    no_origin = await connect("/ws/game")  # non-browser clients send none
    await no_origin.close()


async def test_unknown_path_refuses_handshake():
    with pytest.raises(AssertionError, match="handshake refused"):
        await connect("/ws/nowhere")


# --- §2 envelope ------------------------------------------------------------------------------


async def test_ping_pong_echoes_id():
    client = await connect("/ws/game")
    # Integers wider than 64 bits too: §2 allows any integer of up to 64 characters.
    for frame_id in ("abc", 7, -3, 2**64 + 1, 10**63):
        reply = await client.request({"type": "ping", "id": frame_id})
        assert reply["type"] == "pong" and reply["id"] == frame_id
        assert reply["timestamp"].endswith("Z") and len(reply["timestamp"]) == 24
    await client.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("{", "invalid_json"),
        ('{"type": NaN}', "invalid_json"),
        ('{"type": "ping", "x": Infinity}', "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('"ping"', "invalid_message"),
        ("{}", "invalid_message"),
        ('{"type": 5}', "invalid_message"),
        ('{"type": null}', "invalid_message"),
        ('{"type": "ping", "id": {"a": 1}}', "invalid_message"),
        ('{"type": "ping", "id": true}', "invalid_message"),
        ('{"type": "ping", "id": "' + "x" * 65 + '"}', "invalid_message"),
        ('{"type": "fly_to_moon"}', "unknown_type"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),
    ],
)
async def test_bad_frames_get_errors_and_connection_stays_open(frame, code):
    client = await connect("/ws/game")
    await client.send(frame)
    error = await client.recv()
    assert error["type"] == "error" and error["code"] == code, error
    assert "Traceback" not in error["message"]
    reply = await client.request({"type": "ping"})
    assert reply["type"] == "pong"
    await client.close()


async def test_unknown_type_echoes_id():
    client = await connect("/ws/game")
    reply = await client.request({"type": "nope", "id": "q1"})
    assert reply == {
        "type": "error",
        "code": "unknown_type",
        "message": reply["message"],
        "id": "q1",
        "details": {"type": "nope"},
    }
    await client.close()


async def test_binary_frames_are_invalid_messages():
    client = await connect("/ws/world")
    await client.send_bytes(b"\x00\x01")
    error = await client.recv()
    assert error["code"] == "invalid_message"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_oversized_frame_refused(settings):
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = 1024
    client = await connect("/ws/game")
    await client.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
    assert (await client.recv())["code"] == "message_too_large"
    # multi-byte characters count as bytes, not characters
    await client.send(json.dumps({"type": "ping", "pad": "é" * 600}, ensure_ascii=False))
    assert (await client.recv())["code"] == "message_too_large"
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


# --- §3 rate limit, heartbeat, lifetime -----------------------------------------------------


async def test_rate_limit_then_abuse_close(settings):
    settings.WEBSOCKET_RATE_LIMIT = "2/3"
    client = await connect("/ws/game")
    for _ in range(3):
        await client.send({"type": "ping"})
    replies = [await client.recv() for _ in range(3)]
    assert [r["type"] for r in replies] == ["pong"] * 3
    await client.send({"type": "ping", "id": 9})
    limited = await client.recv()
    assert limited["code"] == "rate_limited"
    assert limited["id"] == 9  # the client can tell which request to send again
    for _ in range(5):
        await client.send({"type": "ping"})
    assert await client.expect_close() == CloseCode.RATE_LIMIT_ABUSE


async def test_rate_limit_zero_disables(settings):
    settings.WEBSOCKET_RATE_LIMIT = "0"
    client = await connect("/ws/game")
    for _ in range(100):
        await client.send({"type": "ping"})
    replies = [await client.recv() for _ in range(100)]
    assert all(r["type"] == "pong" for r in replies)
    await client.close()


async def test_server_pings_and_silent_connection_times_out(fast_realtime):
    client = await connect("/ws/game")
    ping = await client.recv_type("ping", timeout=2)
    assert ping["timestamp"].endswith("Z")
    assert await client.expect_close(timeout=3) == CloseCode.HEARTBEAT_TIMEOUT


async def test_activity_keeps_connection_open(fast_realtime):
    client = await connect("/ws/game")
    for _ in range(8):  # 1.2 s, twice the timeout
        await client.send({"type": "pong"})
        await asyncio.sleep(0.15)
    assert (await client.request({"type": "ping", "id": "alive"}, timeout=2))["type"] == "pong"
    await client.close()


async def test_token_expiry_closes_open_connection(fast_realtime):
    fast_realtime.WEBSOCKET_CONNECTION_TIMEOUT = 30
    user = await db(make_user)()
    client = await connect("/ws/chat", access_token(user, lifetime=timedelta(seconds=2)))
    error = await client.recv_type("error", timeout=5)
    assert error["code"] == "token_expired"
    assert await client.expect_close() == CloseCode.UNAUTHORIZED


async def test_revalidation_closes_banned_and_deactivated(fast_realtime):
    banned = await db(make_user)()
    deactivated = await db(make_user)()
    fast_realtime.WEBSOCKET_CONNECTION_TIMEOUT = 30
    a = await connect("/ws/chat", access_token(banned))
    b = await connect("/ws/world", access_token(deactivated))

    await db(User.objects.filter(pk=banned.pk).update)(banned_until=timezone.now() + timedelta(minutes=5))
    await db(User.objects.filter(pk=deactivated.pk).update)(is_active=False)
    assert (await a.recv_type("error", timeout=3))["code"] == "banned"
    assert await a.expect_close() == CloseCode.FORBIDDEN
    assert (await b.recv_type("error", timeout=3))["code"] == "invalid_token"
    assert await b.expect_close() == CloseCode.UNAUTHORIZED


async def test_drain_closes_with_1001_and_refuses_new():

    client = await connect("/ws/game")
    runtime = current_runtime()
    await runtime.drain()
    assert await client.expect_close() == CloseCode.GOING_AWAY
    error, code = await refused("/ws/game")
    assert (error["code"], code) == ("server_shutting_down", CloseCode.GOING_AWAY)


# --- in-band token refresh -------------------------------------------------------------------


async def test_token_refresh_keeps_the_connection_past_the_old_expiry(fast_realtime):
    fast_realtime.WEBSOCKET_CONNECTION_TIMEOUT = 30
    user = await db(make_user)()
    # `exp` is whole seconds: 2 s from now is 1 to 2 s, enough to connect and refresh.
    first = access_token(user, lifetime=timedelta(seconds=2))
    client = await connect("/ws/chat", first)
    reply = await client.request({"type": "token_refresh", "token": access_token(user)})
    assert reply["type"] == "token_refreshed" and reply["expires_at"].endswith("Z")
    await asyncio.sleep(AccessToken(first)["exp"] - time.time() + 0.5)  # the first token has expired
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_token_refresh_refusals_leave_the_connection_open():
    alice = await db(make_user)()
    bob = await db(make_user)()
    client = await connect("/ws/chat", access_token(alice))
    cases = [
        ({"token": access_token(bob)}, "invalid_token"),  # someone else's token
        ({"token": "garbage"}, "invalid_token"),
        ({"token": refresh_token(alice)}, "invalid_token"),
        ({"token": access_token(alice, lifetime=timedelta(seconds=-1))}, "token_expired"),
        ({"token": ""}, "invalid_message"),
        ({"token": 5}, "invalid_message"),
        ({}, "invalid_message"),
    ]
    for fields, code in cases:
        reply = await client.request({"type": "token_refresh", **fields})
        assert (reply["type"], reply["code"]) == ("error", code), fields
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()


async def test_token_refresh_needs_an_authenticated_connection():
    user = await db(make_user)()
    client = await connect("/ws/game")
    reply = await client.request({"type": "token_refresh", "token": access_token(user)})
    assert reply["code"] == "authentication_required"
    await client.close()


async def test_token_refresh_of_a_banned_user_closes_with_4403():
    user = await db(make_user)()
    client = await connect("/ws/chat", access_token(user))

    await db(User.objects.filter(pk=user.pk).update)(banned_until=timezone.now() + timedelta(minutes=5))
    reply = await client.request({"type": "token_refresh", "token": access_token(user)})
    assert reply["code"] == "banned"
    assert await client.expect_close() == CloseCode.FORBIDDEN
