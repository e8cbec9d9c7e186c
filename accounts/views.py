"""HTTP routes for players: register, JWT token pair and refresh, me, guilds, parties, invitations (§8)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import services
from accounts.models import GUILD, PARTY
from accounts.serializers import (
    AccessTokenSerializer,
    DetailSerializer,
    GroupCreatedSerializer,
    GroupCreateSerializer,
    GroupSummarySerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MeSerializer,
    RefreshSerializer,
    RefreshTokenSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    group_created,
    group_summary,
    invitation_summary,
    me,
)
from accounts.throttling import ResilientScopedRateThrottle

User = get_user_model()

# Answers several routes share (the OpenAPI document, /api/schema/).
FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description="Invalid fields: `{field: [reason, …]}`.")
UNAUTHENTICATED = OpenApiResponse(DetailSerializer, description="No token, or an invalid or expired one.")
THROTTLED = OpenApiResponse(DetailSerializer, description="Over the route's throttle; retry later.")


def refused(description: str) -> OpenApiResponse:
    return OpenApiResponse(DetailSerializer, description=description)


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []  # no session, so no CSRF needed for a JSON sign-up
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_register"

    @extend_schema(
        tags=["accounts"],
        summary="Create an account.",
        request=RegisterSerializer,
        responses={
            201: RegisteredSerializer,
            400: FIELD_ERRORS,
            409: OpenApiResponse(OpenApiTypes.OBJECT, description="The username is taken (ignoring case)."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            return Response({"username": ["That username is taken."]}, status=status.HTTP_409_CONFLICT)
        try:
            user = services.user_register(username=username, password=serializer.validated_data["password"])
        except DjangoValidationError as exc:
            return Response({"password": list(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
        except IntegrityError:
            return Response({"username": ["That username is taken."]}, status=status.HTTP_409_CONFLICT)
        return Response({"id": str(user.pk), "username": user.username}, status=status.HTTP_201_CREATED)


@extend_schema(
    tags=["accounts"],
    summary="An access and a refresh token for a username and password.",
    responses={
        200: TokenPairSerializer,
        401: refused("Wrong username or password, or an inactive account."),
        429: THROTTLED,
    },
)
class TokenView(TokenObtainPairView):
    authentication_classes = ()
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_token"


@extend_schema(
    tags=["accounts"],
    summary="A new access token for a refresh token.",
    description="",
    request=RefreshTokenSerializer,
    responses={
        200: AccessTokenSerializer,
        401: refused("An invalid or expired token, or one of a deleted or deactivated account."),
        429: THROTTLED,
    },
)
class RefreshView(TokenRefreshView):
    authentication_classes = ()
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_token"
    serializer_class = RefreshSerializer


class MeView(APIView):
    @extend_schema(
        tags=["accounts"],
        summary="Who you are: roles, guild, party and pending invitations.",
        responses={200: MeSerializer, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        user = User.objects.select_related("guild", "party").get(pk=request.user.pk)
        return Response(me(user, services.invitations_pending(user=user)))


# --- guilds and parties ---------------------------------------------------------------------------


class MembershipView(APIView):
    """The membership routes: throttled per user (`MEMBERSHIP_THROTTLE`), since each one moves
    open connections on every instance and may notify other players."""

    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "membership"
    kind = GUILD

    def answer(self, call: Callable[[], Any], *, created: bool = False) -> Response:
        try:
            result = call()
        except services.MembershipError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        if created:
            return Response(result, status=status.HTTP_201_CREATED)
        return Response(group_summary(result) if result is not None else {"detail": "left"}, status=status.HTTP_200_OK)


class GroupCreateView(MembershipView):
    @extend_schema(
        tags=["guilds and parties"],
        summary="Create a guild or party; you lead it and join it (leaving any other).",
        description="A party's name is optional (\"<you>'s party\"). `open` lets anyone join without an invitation.",
        request=GroupCreateSerializer,
        responses={
            201: GroupCreatedSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            409: refused("A guild of that name exists (ignoring case)."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        body = request.data
        if self.kind == PARTY and isinstance(body, Mapping) and not body.get("name"):
            # A party is often formed on the spot: it may go without a name.
            body = {**body, "name": f"{request.user.username}'s party"}
        serializer = GroupCreateSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        create = services.guild_create if self.kind == GUILD else services.party_create
        return self.answer(lambda: group_created(create(user=request.user, **serializer.validated_data)), created=True)


class GroupJoinView(MembershipView):
    @extend_schema(
        tags=["guilds and parties"],
        summary="Join an open group, or one that invited you (moves you from any other).",
        request=None,
        responses={
            200: GroupSummarySerializer,
            401: UNAUTHENTICATED,
            403: refused("Invitation-only, and no invitation of yours."),
            404: refused("No such guild or party."),
            409: refused("The party is full."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, group_id) -> Response:
        if self.kind == GUILD:
            return self.answer(lambda: services.guild_join(user=request.user, guild_id=group_id))
        return self.answer(lambda: services.party_join(user=request.user, party_id=group_id))


class GroupLeaveView(MembershipView):
    @extend_schema(
        tags=["guilds and parties"],
        summary="Leave your guild or party; a leaving leader hands over to the longest-standing member.",
        request=None,
        responses={200: DetailSerializer, 401: UNAUTHENTICATED, 409: refused("You are not in one."), 429: THROTTLED},
    )
    def post(self, request: Request) -> Response:
        leave = services.guild_leave if self.kind == GUILD else services.party_leave
        return self.answer(lambda: leave(user=request.user))


class InvitationCreateView(MembershipView):
    @extend_schema(
        tags=["guilds and parties"],
        summary="Invite a player (the group's leader only); inviting again renews the invitation.",
        request=InvitationCreateSerializer,
        responses={
            201: InvitationSerializer,
            400: FIELD_ERRORS,
            401: UNAUTHENTICATED,
            403: refused("You are not the group's leader."),
            404: refused("No such group, or no such user."),
            409: refused("The player is already in this group."),
            429: THROTTLED,
        },
    )
    def post(self, request: Request, group_id) -> Response:
        serializer = InvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        whom = serializer.validated_data
        return self.answer(
            lambda: invitation_summary(
                services.invitation_create(
                    inviter=request.user,
                    kind=self.kind,
                    group_id=group_id,
                    invitee_id=whom.get("user_id"),
                    username=whom.get("username", ""),
                )
            ),
            created=True,
        )
