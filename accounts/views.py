"""HTTP routes for players: register, JWT token pair and refresh, me, guilds, parties (§8)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts import services
from accounts.serializers import NameSerializer, RegisterSerializer, group_summary, me
from accounts.throttling import ResilientScopedRateThrottle

User = get_user_model()


class RegisterView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []  # no session, so no CSRF needed for a JSON sign-up
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_register"

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


class TokenView(TokenObtainPairView):
    authentication_classes = ()
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_token"


class RefreshView(TokenRefreshView):
    authentication_classes = ()
    throttle_classes = [ResilientScopedRateThrottle]
    throttle_scope = "auth_token"


class MeView(APIView):
    def get(self, request: Request) -> Response:
        user = User.objects.select_related("guild", "party").get(pk=request.user.pk)
        return Response(me(user))


def _membership_response(call) -> Response:
    try:
        result = call()
    except services.MembershipError as exc:
        return Response({"detail": str(exc)}, status=exc.status)
    return Response(group_summary(result) if result is not None else {"detail": "left"}, status=status.HTTP_200_OK)


class GuildCreateView(APIView):
    def post(self, request: Request) -> Response:
        serializer = NameSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            guild = services.guild_create(user=request.user, name=serializer.validated_data["name"])
        except services.MembershipError as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(group_summary(guild), status=status.HTTP_201_CREATED)


class GuildJoinView(APIView):
    def post(self, request: Request, guild_id) -> Response:
        return _membership_response(lambda: services.guild_join(user=request.user, guild_id=guild_id))


class GuildLeaveView(APIView):
    def post(self, request: Request) -> Response:
        return _membership_response(lambda: services.guild_leave(user=request.user))


class PartyCreateView(APIView):
    def post(self, request: Request) -> Response:
        serializer = NameSerializer(data=request.data or {"name": f"{request.user.username}'s party"})
        serializer.is_valid(raise_exception=True)
        party = services.party_create(user=request.user, name=serializer.validated_data["name"])
        return Response(group_summary(party), status=status.HTTP_201_CREATED)


class PartyJoinView(APIView):
    def post(self, request: Request, party_id) -> Response:
        return _membership_response(lambda: services.party_join(user=request.user, party_id=party_id))


class PartyLeaveView(APIView):
    def post(self, request: Request) -> Response:
        return _membership_response(lambda: services.party_leave(user=request.user))
