"""Security review, in process: token redaction in logs, the Host header on handshakes, CSRF on
session-authenticated POSTs, password and name rules on sign-up, the brute-force throttle on
the token route (also when its cache fails), the per-user connection cap. The parts that need a
real server (access log, Origin, frame size, per-address cap, throttle across instances) are in
tests/integration/test_security.py; docs/reliability.md lists every threat and its test."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from accounts import throttling
from realtime.protocol import CloseCode
from rpgrealtime.logging import RedactTokensFilter, redact
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import PASSWORD, access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


# --- tokens never reach a log line ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        f"GET /ws/chat?token={JWT} HTTP/1.1",
        f"WSCONNECT /ws/chat?foo=1&token={JWT}&bar=2",
        f"Authorization: Bearer {JWT}",
        f"Sec-WebSocket-Protocol: bearer, {JWT}",
    ],
)
def test_the_log_filter_redacts_tokens_however_they_were_presented(line):
    assert JWT not in redact(line) and "[redacted]" in redact(line)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "seen %s", (line,), None)
    RedactTokensFilter().filter(record)
    assert JWT not in record.getMessage()


def test_redaction_leaves_other_text_alone():
    assert redact("token=abc and Bearer xyz") == "token=abc and Bearer xyz"


# --- the Host header of a handshake --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),  # no Host header: not a browser
        (b"localhost:8000", True),
        (b"127.0.0.1", True),
        (b"evil.example", False),
        (b"evil.example:8000", False),
        (b"", False),
    ],
)
async def test_handshake_with_a_host_not_in_allowed_hosts_is_refused(settings, host, allowed):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    headers = [(b"host", host)] if host is not None else []
    if allowed:
        client = await connect("/ws/game", headers=headers)
        await client.close()
    else:
        with pytest.raises(AssertionError, match="handshake refused"):
            await connect("/ws/game", headers=headers)


# --- CSRF on session-authenticated POSTs -------------------------------------------------------


def test_session_authenticated_posts_need_the_csrf_token():
    player = make_user()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(player)
    refused = browser.post("/api/v1/guilds/", {"name": "Forged"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    browser.get("/admin/login/")  # any page that sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    done = browser.post(
        "/api/v1/guilds/", {"name": "Real"}, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert done.status_code == 201


def test_staff_session_cannot_publish_without_the_csrf_token():
    staff = make_user(is_staff=True)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    body = {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}}
    assert browser.post("/api/v1/websocket/publish", body, content_type="application/json").status_code == 403


def test_bearer_token_posts_need_no_csrf_token():
    player = make_user()
    api = Client(enforce_csrf_checks=True)
    response = api.post(
        "/api/v1/guilds/",
        {"name": "ByToken"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(player)}"},
    )
    assert response.status_code == 201


# --- sign-up rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "status", "field"),
    [
        ("newcomer", "password", 400, "password"),  # too common
        ("newcomer", "12345678901", 400, "password"),  # all digits
        ("newcomer", "short", 400, "password"),  # under 8
        ("newcomer", "newcomer1", 400, "password"),  # like the user name
        ("newcomer", "x" * 129, 400, "password"),
        ("no", PASSWORD, 400, "username"),
        ("bad name!", PASSWORD, 400, "username"),
        ("<script>", PASSWORD, 400, "username"),
        ("newcomer", PASSWORD, 201, None),
    ],
)
def test_register_refuses_weak_passwords_and_odd_names(settings, username, password, status, field):
    settings.AUTH_REGISTER_THROTTLE = "1000/min"
    response = Client().post(
        "/api/v1/auth/register/", {"username": username, "password": password}, content_type="application/json"
    )
    assert response.status_code == status, response.content
    if field:
        assert field in response.json()
    else:
        assert "password" not in response.json()


def test_register_refuses_a_taken_name_whatever_its_case(settings):
    settings.AUTH_REGISTER_THROTTLE = "1000/min"
    make_user("Taken")
    response = Client().post(
        "/api/v1/auth/register/", {"username": "taken", "password": PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 409


# --- brute force on the token route -------------------------------------------------------------


def attempt(username: str, password: str) -> int:
    return (
        Client()
        .post("/api/v1/auth/token/", {"username": username, "password": password}, content_type="application/json")
        .status_code
    )


@pytest.fixture
def throttled(settings):

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_token": "3/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    cache.clear()
    yield
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    cache.clear()


def test_token_route_answers_429_after_too_many_attempts(throttled):
    make_user("victim")
    assert [attempt("victim", f"guess{n}") for n in range(3)] == [401, 401, 401]
    assert attempt("victim", PASSWORD) == 429  # even the right password, until the window ends
    assert attempt("someone-else", "guess") == 429  # per client address, not per account


def test_token_route_keeps_throttling_when_its_cache_fails(throttled, monkeypatch):

    make_user("victim")

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(throttling.ResilientScopedRateThrottle, "cache", type("Broken", (), {"get": broken})())
    throttling._local.clear()
    assert attempt("victim", PASSWORD) == 200  # not a 500
    assert [attempt("victim", "guess") for _ in range(2)] == [401, 401]
    assert attempt("victim", PASSWORD) == 429  # counted in this process meanwhile


# --- connection caps ----------------------------------------------------------------------------


async def test_connections_per_user_are_capped(settings):
    settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER = 3
    user = await db(make_user)()
    token = access_token(user)
    opened = [await connect(path, token) for path in ("/ws/game", "/ws/chat", "/ws/world")]
    refused = await connect("/ws/combat", token, expect_established=False)
    error = await refused.recv()
    assert (error["code"], await refused.expect_close()) == ("too_many_connections", CloseCode.RATE_LIMIT_ABUSE)
    await opened[0].close()
    again = await connect("/ws/combat", token)  # a slot is free again
    for client in [*opened[1:], again]:
        await client.close()


# --- token_refresh ------------------------------------------------------------------------------


async def test_token_refresh_with_a_banned_strangers_token_is_just_invalid():

    me = await db(make_user)()
    stranger = await db(make_user)(banned_until=timezone.now() + timedelta(days=1))
    client = await connect("/ws/chat", access_token(me))
    reply = await client.request({"type": "token_refresh", "token": access_token(stranger)})
    # Not "banned", and the caller stays connected: the stranger's state is not the caller's.
    assert (reply["code"], reply["message"]) == ("invalid_token", "The token belongs to another user.")
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.close()
