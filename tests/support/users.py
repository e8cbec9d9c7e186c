"""Users and JWTs for tests."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
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


def allow_publishing(user_id: Any) -> None:
    """Give a (staff) user the permission the publish route needs (docs/protocol.md §8)."""
    permission = Permission.objects.get(content_type__app_label="realtime", codename="publish_event")
    get_user_model().objects.get(pk=user_id).user_permissions.add(permission)


def make_publisher(**fields: Any):
    """A staff user allowed to use the publish route."""
    user = make_user(is_staff=True, **fields)
    allow_publishing(user.pk)
    return user
