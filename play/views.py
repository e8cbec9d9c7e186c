"""The /play/ page (a Django template loading ES modules; no build step) and its roster route."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from play import services
from play.serializers import RosterSerializer
from realtime.models import Zone
from realtime.protocol.catalogue import MAX_MONSTERS_PER_FIGHT, MONSTERS


@require_safe
def play_page(request: HttpRequest) -> HttpResponse:
    """The game client. The rules the page needs to draw and validate (zones, monsters, radius,
    step) come from the server, so admin edits of zones show up on the next page load."""
    config = {
        "zones": [
            {
                "name": zone.name,
                "title": zone.title or zone.name.replace("_", " ").title(),
                "min_x": zone.min_x,
                "min_y": zone.min_y,
                "max_x": zone.max_x,
                "max_y": zone.max_y,
                "spawn_x": zone.spawn_x,
                "spawn_y": zone.spawn_y,
            }
            for zone in Zone.objects.order_by("name")
        ],
        "monsters": [{"key": kind.key, "name": kind.name, "max_hp": kind.stats.max_hp} for kind in MONSTERS.values()],
        "max_monsters": MAX_MONSTERS_PER_FIGHT,
        "nearby_radius": settings.WORLD_NEARBY_RADIUS,
        "max_step": settings.WORLD_MAX_STEP,
    }
    context = {
        "play_config": config,
        "endpoints": ("game", "chat", "world", "combat"),
        # The demo password is in the README anyway; on a development server, say it here too.
        "demo": {"users": services.DEMO_USERNAMES, "password": services.DEMO_PASSWORD} if settings.DEBUG else None,
    }
    response = render(request, "play/index.html", context)
    # The page itself holds no secret, but tokens live in its sessionStorage: keep it out of
    # other sites' frames and never leak the page address to linked sites.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Frame-Options"] = "DENY"
    response["Content-Security-Policy"] = content_security_policy(request.get_host())
    return response


def content_security_policy(host: str) -> str:
    """Only the page's own scripts, styles and sockets: no inline script or style, nothing from
    another origin, so injected markup cannot run or phone home. The sockets are named as well
    as 'self' because older browsers do not count ws:// and wss:// as 'self'."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class RosterView(APIView):
    """GET → your guild and party with each member's presence, and guilds/parties to join.

    Presence events only report changes; this is the snapshot a client starts from.
    """

    @extend_schema(
        tags=["play"],
        summary="Your guild and party with each member's presence, groups to join, your invitations.",
        responses={200: RosterSerializer, 401: OpenApiResponse(description="Not logged in.")},
    )
    def get(self, request: Request) -> Response:
        response = Response(services.roster_for(user_id=request.user.pk))
        response["Cache-Control"] = "no-store"
        return response
