"""GET /api/v1/websocket/metrics: this instance's and the cluster's numbers as JSON (docs/protocol.md §8).

Staff only (JWT or admin session), unless `WEBSOCKET_METRICS_PUBLIC=true`. Prometheus scrapes
the same numbers at `/metrics`.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.features.monitoring import metrics_snapshot


class StaffOrPublicMetrics(BasePermission):
    """Staff, or anyone when the operator made the metrics public."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.WEBSOCKET_METRICS_PUBLIC:
            return True
        return bool(request.user and request.user.is_staff)


class MetricsView(APIView):
    permission_classes = [StaffOrPublicMetrics]

    @extend_schema(
        tags=["websocket"],
        summary="This instance's and the cluster's numbers (staff, or anyone with WEBSOCKET_METRICS_PUBLIC).",
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="`instance`, `connections` (instance and cluster, by endpoint), `frames` in and out by "
                "endpoint and type, `errors`, `auth_failures`, `rate_limited`, `instances` (docs/protocol.md §8).",
            ),
            401: OpenApiResponse(description="Not logged in."),
            403: OpenApiResponse(description="Not staff."),
        },
    )
    def get(self, request: Request) -> Response:
        response = Response(metrics_snapshot())
        response["Cache-Control"] = "no-store"
        return response
