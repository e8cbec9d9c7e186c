"""HTTP views of the real-time system: health and publish (§8)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from rest_framework import status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime import events
from realtime.runtime import get_shared_state

CHECK_TIMEOUT = 0.8  # seconds per check; the whole answer stays under a second


async def _timed(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except TimeoutError:
        return {"status": "error", "error": "timeout", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # the class name only: no hosts, paths or SQL leak out
        return {"status": "error", "error": type(exc).__name__}


def _database_roundtrip() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def health(request) -> JsonResponse:
    checks = dict(
        zip(
            ("channel_layer", "database"),
            await asyncio.gather(
                _timed(lambda: get_shared_state().ping()),
                _timed(database_sync_to_async(_database_roundtrip)),
            ),
            strict=True,
        )
    )
    healthy = all(check["status"] == "ok" for check in checks.values())
    return JsonResponse(
        {"status": "healthy" if healthy else "unhealthy", "checks": checks},
        status=200 if healthy else 503,
    )


class PublishView(APIView):
    """POST /api/v1/websocket/publish (staff): `{"target": ..., "message": {...}}` -> 202."""

    permission_classes = [IsAdminUser]

    def post(self, request: Request) -> Response:
        target = request.data.get("target") if isinstance(request.data, dict) else None
        message = request.data.get("message") if isinstance(request.data, dict) else None
        if len(orjson.dumps(message)) > settings.WEBSOCKET_MAX_MESSAGE_BYTES:
            return Response({"detail": "message is too large"}, status=status.HTTP_400_BAD_REQUEST)
        try:
            outcome = events.publish_sync(target, message)
        except events.PublishError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"status": "accepted", "delivery": outcome}, status=status.HTTP_202_ACCEPTED)
