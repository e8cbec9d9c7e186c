"""The OpenAPI description of the routes drf-spectacular cannot see: the health check (an async
Django view, so load balancers never wait on DRF) and Prometheus' `/metrics` (docs/protocol.md §8).

A postprocessing hook (SPECTACULAR_SETTINGS): it adds their paths to the generated document.
"""

from __future__ import annotations

from typing import Any

_CHECK_FIELDS: dict[str, Any] = {
    "status": {"type": "string", "enum": ["ok", "error"]},
    "latency_ms": {"type": "number"},
    "error": {"type": "string", "description": "The exception's class name (never a host or SQL)."},
}
_CHECK = {"type": "object", "properties": _CHECK_FIELDS, "required": ["status"]}

_LAYER_CHECK = {
    **_CHECK,
    "properties": {
        **_CHECK_FIELDS,
        "backend": {"type": "string", "enum": ["memory", "redis"]},
        "shards": {
            "type": "array",
            "items": _CHECK,
            "description": "With CHANNEL_LAYER_REDIS_URLS: each Redis server's own check, in that order.",
        },
    },
}

HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
        "checks": {
            "type": "object",
            "properties": {"channel_layer": _LAYER_CHECK, "database": _CHECK, "shared_state": _CHECK},
            "additionalProperties": _CHECK,
        },
        "draining": {"type": "boolean", "description": "The instance is shutting down."},
    },
    "required": ["status", "checks", "draining"],
}

PATHS: dict[str, Any] = {
    "/api/v1/websocket/health": {
        "get": {
            "operationId": "websocket_health",
            "summary": "Is this instance fit to take connections? For load balancers.",
            "description": "Every check is capped, so it answers within a second even when Redis hangs.",
            "tags": ["websocket"],
            "security": [{}],
            "responses": {
                "200": {
                    "description": "Healthy.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                },
                "503": {
                    "description": "A check failed, or the instance drains.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                },
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "prometheus_metrics",
            "summary": "Prometheus metrics of this instance (hide it at the proxy).",
            "tags": ["metrics"],
            "security": [{}],
            "responses": {
                "200": {
                    "description": "Prometheus' text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


def describe_plain_routes(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add the paths above and their schema."""
    result.setdefault("paths", {}).update(PATHS)
    result.setdefault("components", {}).setdefault("schemas", {})["Health"] = HEALTH
    result["paths"] = dict(sorted(result["paths"].items()))
    return result
