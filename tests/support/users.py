"""Users and JWTs for tests."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-staple"


def make_user(username: str | None = None, **fields: Any):
    User = get_user_model()
    user = User(username=username or f"player{next(_counter)}", **fields)
    user.set_password(PASSWORD)
    user.save()
    return user


def access_token(user, lifetime: timedelta | None = None) -> str:
    token = AccessToken.for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def refresh_token(user) -> str:
    return str(RefreshToken.for_user(user))
