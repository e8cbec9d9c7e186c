"""Request and response shapes of the account routes (docs/protocol.md §8)."""

from __future__ import annotations

from rest_framework import serializers


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(
        r"^[A-Za-z0-9_.-]{3,32}$",
        error_messages={"invalid": "3-32 letters, digits, '_', '.' or '-'."},
    )
    password = serializers.CharField(min_length=8, max_length=128, write_only=True, trim_whitespace=False)


class NameSerializer(serializers.Serializer):
    name = serializers.CharField(min_length=2, max_length=64)


def group_summary(obj) -> dict | None:
    return {"id": str(obj.pk), "name": obj.name} if obj is not None else None


def me(user) -> dict:
    return {
        "id": str(user.pk),
        "username": user.username,
        "is_staff": user.is_staff,
        "is_moderator": user.is_moderator,
        "guild": group_summary(user.guild),
        "party": group_summary(user.party),
    }
