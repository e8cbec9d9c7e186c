"""Request and response shapes of the account routes (docs/protocol.md §8)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from accounts.models import Invitation
from realtime.protocol import now_iso
from realtime.protocol.text import InvisibleText, visible_text

GROUP_NAME_MIN_LENGTH = 2
GROUP_NAME_MAX_LENGTH = 64


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(
        r"^[A-Za-z0-9_.-]{3,32}$",
        error_messages={"invalid": "3-32 letters, digits, '_', '.' or '-'."},
    )
    password = serializers.CharField(min_length=8, max_length=128, write_only=True, trim_whitespace=False)


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, with a token of a deleted account answered 401 exactly like an inactive one.

    simplejwt 5.5.1 looks the user up with `objects.get` and lets `DoesNotExist` through (a 500
    with a traceback). A user id that is not a UUID can only come from a token signed with our
    key, but it is refused the same way.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            return super().validate(attrs)
        except (ObjectDoesNotExist, DjangoValidationError) as exc:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from exc


class GroupCreateSerializer(serializers.Serializer):
    """`{"name": "…", "open": false}`: a guild or party; `open` lets anyone join without an invitation."""

    name = serializers.CharField(min_length=GROUP_NAME_MIN_LENGTH, max_length=GROUP_NAME_MAX_LENGTH)
    open = serializers.BooleanField(default=False)

    def validate_name(self, value: str) -> str:
        return group_name(value)


def group_name(value: str) -> str:
    """A guild or party name by the rule of every text shown to others (realtime/protocol/text.py)."""
    try:
        value = visible_text(value)
    except InvisibleText as exc:
        raise serializers.ValidationError(f"The name {exc}.") from None
    if len(value) < GROUP_NAME_MIN_LENGTH:
        raise serializers.ValidationError(f"The name must have at least {GROUP_NAME_MIN_LENGTH} characters.")
    return value


class InvitationCreateSerializer(serializers.Serializer):
    """`{"user_id": "<uuid>"}` or `{"username": "…"}`: whom to invite."""

    user_id = serializers.UUIDField(required=False)
    username = serializers.CharField(required=False, max_length=150)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user_id" in attrs) == ("username" in attrs):
            raise serializers.ValidationError("Give either user_id or username.")
        return attrs


def group_summary(obj) -> dict | None:
    return {"id": str(obj.pk), "name": obj.name} if obj is not None else None


def group_created(obj) -> dict:
    return {"id": str(obj.pk), "name": obj.name, "open": obj.open}


def invitation_summary(invitation: Invitation) -> dict[str, Any]:
    """An invitation as the invited player and the inviter see it (the `invitation` event's fields)."""
    inviter = invitation.invited_by
    return {
        "id": str(invitation.pk),
        "kind": invitation.kind,
        "group_id": str(invitation.group.pk),
        "name": invitation.group.name,
        "from": {"id": str(inviter.pk), "username": inviter.username} if inviter is not None else None,
        "user": {"id": str(invitation.invitee.pk), "username": invitation.invitee.username},
        "expires_at": now_iso(invitation.expires_at),
    }


def me(user, invitations: list[Invitation]) -> dict:
    return {
        "id": str(user.pk),
        "username": user.username,
        "is_staff": user.is_staff,
        "is_moderator": user.is_moderator,
        "guild": group_summary(user.guild),
        "party": group_summary(user.party),
        "invitations": [invitation_summary(invitation) for invitation in invitations],
    }


# --- response shapes, for the OpenAPI document (/api/schema/) -----------------------------------
# The routes build their answers with the functions above; tests/accounts/test_openapi.py checks
# real answers against these.


class UserRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()


class RegisteredSerializer(UserRefSerializer):
    """The account just created."""


class GroupSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class GroupCreatedSerializer(GroupSummarySerializer):
    open = serializers.BooleanField(help_text="Anyone may join without an invitation.")


class InvitationSerializer(serializers.Serializer):
    """An invitation to a guild or party, as the invited player and the inviter see it."""

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=["guild", "party"])
    group_id = serializers.UUIDField()
    name = serializers.CharField(help_text="The guild's or party's name.")
    user = UserRefSerializer(help_text="The invited player.")
    expires_at = serializers.DateTimeField()

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()  # `from` is a Python keyword: no class attribute can carry it
        fields["from"] = UserRefSerializer(allow_null=True, help_text="Who invited; null if that account is gone.")
        return fields


class MeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField()
    is_moderator = serializers.BooleanField()
    guild = GroupSummarySerializer(allow_null=True)
    party = GroupSummarySerializer(allow_null=True)
    invitations = InvitationSerializer(many=True, help_text="Pending invitations, newest first.")


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="For the API and the WebSocket endpoints (`JWT_ACCESS_TOKEN_LIFETIME`).")
    refresh = serializers.CharField(help_text="For `POST /api/v1/auth/token/refresh/` (`JWT_REFRESH_TOKEN_LIFETIME`).")


class RefreshTokenSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    """A refusal, or the outcome of a request that returns nothing else."""

    detail = serializers.CharField()
