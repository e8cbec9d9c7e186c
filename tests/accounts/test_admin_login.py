"""The admin login lockout (docs/protocol.md §8, docs/operations.md "Admin"): after
`ADMIN_LOGIN_FAILURE_LIMIT` failures for one username from one address, that pair is refused —
even with the right password — until 15 minutes have passed; the JWT token route is not affected."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from rest_framework.throttling import ScopedRateThrottle

from accounts.models import User
from tests.support.users import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 10  # the default of ADMIN_LOGIN_FAILURE_LIMIT


def admin_login(username: str, password: str, address: str = "203.0.113.7") -> int:
    """The status of one login through the admin's form: 302 logged in, 200 refused, 429 locked out."""
    client = Client(REMOTE_ADDR=address)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response.status_code


def token(client: Client, username: str, password: str):
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/token/", body, content_type="application/json")


def test_the_limit_is_the_setting(settings):
    assert settings.AXES_FAILURE_LIMIT == settings.ADMIN_LOGIN_FAILURE_LIMIT == LIMIT
    assert timedelta(minutes=15) == settings.AXES_COOLOFF_TIME


def test_the_right_password_is_refused_after_ten_failures_for_that_username_and_address():
    make_user("warden", is_staff=True)
    make_user("keeper", is_staff=True)
    assert admin_login("warden", PASSWORD) == 302  # works before
    codes = [admin_login("warden", "wrong-password") for _ in range(LIMIT)]
    assert codes[: LIMIT - 1] == [200] * (LIMIT - 1)  # the form again, with its error
    assert codes[-1] == 429  # the tenth failure locks
    locked = Client(REMOTE_ADDR="203.0.113.7").post("/admin/login/", {"username": "warden", "password": PASSWORD})
    assert locked.status_code == 429 and "locked" in locked.content.decode().lower()
    assert "sessionid" not in locked.cookies
    # Another username from the same address, and the same username from another address, are not.
    assert admin_login("keeper", PASSWORD) == 302
    assert admin_login("warden", PASSWORD, address="198.51.100.20") == 302


def test_nine_failures_do_not_lock():
    make_user("almost", is_staff=True)
    for _ in range(LIMIT - 1):
        assert admin_login("almost", "wrong-password") == 200
    assert admin_login("almost", PASSWORD) == 302


def test_the_lockout_ends_when_the_window_has_passed(settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    make_user("patient", is_staff=True)
    for _ in range(LIMIT):
        admin_login("patient", "wrong-password")
    assert admin_login("patient", PASSWORD) == 429
    # Attempts during the lockout do not extend it.
    assert admin_login("patient", "wrong-password") == 429
    time.sleep(1.2)
    assert admin_login("patient", PASSWORD) == 302


def test_the_token_route_keeps_its_own_answers_and_records_nothing(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth_token": "100/min"})
    make_user("player")
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(LIMIT + 5):
        response = token(client, "player", "wrong")
        assert response.status_code == 401
        assert response.json()["detail"] == "No active account found with the given credentials"
    ok = client.post(
        "/api/v1/auth/token/", {"username": "player", "password": PASSWORD}, content_type="application/json"
    )
    assert ok.status_code == 200 and set(ok.json()) == {"access", "refresh"}
    assert not AccessAttempt.objects.exists()
    # Nor do those failures lock the same name out of the admin.
    User.objects.filter(username="player").update(is_staff=True)
    assert admin_login("player", PASSWORD) == 302


def test_the_token_route_still_throttles_per_address(monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth_token": "3/min"})
    client = Client(REMOTE_ADDR="203.0.113.9")
    codes = [
        client.post(
            "/api/v1/auth/token/", {"username": "x", "password": "y"}, content_type="application/json"
        ).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_failures_are_counted_in_the_database_shared_by_every_instance():
    make_user("counted", is_staff=True)
    for _ in range(3):
        admin_login("counted", "wrong-password")
    attempt = AccessAttempt.objects.get(username="counted")
    assert (attempt.ip_address, attempt.failures_since_start) == ("203.0.113.7", 3)
    assert "wrong-password" not in attempt.post_data  # axes masks the password
