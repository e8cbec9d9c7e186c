"""POST /api/v1/websocket/publish (staff): push a server event to a target (docs/protocol.md §8).

`{"target": "user:<uuid>" | "game" | "world" | "zone:<name>" | "guild:<id>" | "party:<id>" | "chat",
  "message": {"type": "...", ...}}` → 202 `{"status": "accepted", "delivery": "live" | "stored"}`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.serializers import DetailSerializer
from realtime.features import publish
from realtime.protocol import PROTOCOL_TYPES, PUBLISHABLE_TYPES, RESERVED_FIELDS, encode, now_iso

# The server's own types: a published copy would let anyone with the route speak as the server
# (a chat message "from alice", a fake ban notice, a fake handshake or error).
RESERVED_TYPES = PROTOCOL_TYPES - PUBLISHABLE_TYPES
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The layer may hang (Redis frozen): the request thread must not.
PUBLISH_TIMEOUT = 5.0


class PublishSerializer(serializers.Serializer):
    target = serializers.CharField(
        max_length=200,
        trim_whitespace=False,
        help_text="`user:<uuid>`, `game`, `world`, `zone:<name>`, `guild:<id>`, `party:<id>` or `chat`.",
    )
    message = serializers.DictField(
        help_text='The event: `{"type": "…", …}`; the server adds `timestamp` (docs/asyncapi.json has the '
        "shapes of `system_announcement`, `game_state`, `achievement` and `world_event`)."
    )

    def validate_target(self, target: str) -> str:
        try:
            publish.resolve_target(target)
        except publish.PublishError as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return target

    def validate_message(self, message: dict[str, Any]) -> dict[str, Any]:
        event_type = message.get("type")
        if not isinstance(event_type, str) or not TYPE_PATTERN.match(event_type):
            raise serializers.ValidationError(
                "'type' must be a string of lowercase letters, digits and '_' (at most 64), starting with a letter."
            )
        if event_type in RESERVED_TYPES:
            allowed = ", ".join(sorted(PUBLISHABLE_TYPES))
            raise serializers.ValidationError(
                f"'{event_type}' is the server's own type and cannot be published; the protocol's types that "
                f"can are {allowed}, besides types of your own."
            )
        reserved = sorted(RESERVED_FIELDS & message.keys())
        if reserved:
            raise serializers.ValidationError(
                f"{', '.join(repr(name) for name in reserved)}: set by the server only (replies and stream positions)."
            )
        size = len(encode({**message, "timestamp": now_iso()}).encode())
        if size > settings.WEBSOCKET_MAX_MESSAGE_BYTES:
            raise serializers.ValidationError(
                f"The event is {size} bytes; events are limited to {settings.WEBSOCKET_MAX_MESSAGE_BYTES}."
            )
        return message


async def _publish(target: str, message: dict[str, Any]) -> str:
    """404 for a target that does not exist, else publish within PUBLISH_TIMEOUT."""
    missing = await publish.target_missing(target)
    if missing:
        raise LookupError(missing)
    return await asyncio.wait_for(publish.publish(target, message), PUBLISH_TIMEOUT)


class CanPublish(IsAdminUser):
    """Staff with the `realtime.publish_event` permission (superusers have every permission)."""

    message = "Publishing needs a staff account with the 'realtime.publish_event' permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return super().has_permission(request, view) and request.user.has_perm("realtime.publish_event")


class PublishedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["accepted"])
    delivery = serializers.ChoiceField(
        choices=["live", "stored"], help_text="`stored`: kept for a user with no connection that carries it."
    )


def _answer(description: str) -> OpenApiResponse:
    return OpenApiResponse(DetailSerializer, description=description)


class PublishView(APIView):
    """Anonymous callers get 401; other users, and staff without the permission, 403."""

    permission_classes = [CanPublish]

    @extend_schema(
        tags=["websocket"],
        summary="Push a server event to a target (staff with realtime.publish_event).",
        request=PublishSerializer,
        responses={
            202: PublishedSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="A bad target, a reserved type or field, or a malformed event."
            ),
            401: _answer("Not logged in."),
            403: _answer("Not staff, or no realtime.publish_event permission."),
            404: _answer("No such user, guild, party or zone."),
            503: _answer("The channel layer refused: only this instance's connections were reached."),
        },
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return Response({"detail": "The body must be a JSON object."}, status=status.HTTP_400_BAD_REQUEST)
        serializer = PublishSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        target, message = serializer.validated_data["target"], serializer.validated_data["message"]
        try:
            delivery = async_to_sync(_publish)(target, message)
        except publish.PublishError as exc:  # the event's own checks (e.g. a game_state without key)
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        except LookupError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)
        except TimeoutError:
            delivery = "unavailable"
        if delivery in ("local", "unavailable"):
            return Response(
                {"detail": "The channel layer is unavailable; other instances were not reached. Try again shortly."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "accepted", "delivery": delivery}, status=status.HTTP_202_ACCEPTED)
