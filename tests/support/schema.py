"""Frames checked against the protocol's published schema (docs/asyncapi.json).

Every frame a test client receives, in-process or from a real server, goes through `check_server`;
a frame that does not match its schema, of a type the endpoint does not list, or of a type that
has no schema at all fails the test that read it. Server frames are checked *closed*: the
document leaves objects open for newer minor versions (clients ignore unknown fields), but this
version must send no field its types do not list.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
URI = "urn:rpgrealtime:asyncapi"
SCHEMAS = "#/components/schemas/"

# Types of the tests' own events sent through the publish route, which accepts types of the
# caller's own besides the protocol's (docs/protocol.md §8): they have no schema by design.
PUBLISHED_TEST_TYPES = frozenset(
    {"x", "notice", "quest_update", "guild_notice", "guild_news", "chat_notice", "custom_thing"}
)


class SchemaMismatch(AssertionError):
    """A frame the protocol document does not allow."""


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def _close(document: dict[str, Any], names: set[str]) -> None:
    """No unlisted fields in these schemas and every object schema they reach (unless a schema
    says `additionalProperties` itself: the published types keep the publisher's fields)."""
    schemas = document["components"]["schemas"]
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack = [schemas[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, list):
                stack.extend(node)
                continue
            if not isinstance(node, dict):
                continue
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    todo.append(value.removeprefix(SCHEMAS))
                elif key not in ("examples", "default", "const", "enum"):
                    stack.append(value)


class ProtocolSchema:
    """The document, indexed: which message (and schema) each type has, per endpoint and direction."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = copy.deepcopy(document)
        messages = self.document["components"]["messages"]
        # (direction, endpoint) -> {type: schema name}
        self.by_endpoint: dict[tuple[str, str], dict[str, str]] = {}
        for operation in self.document["operations"].values():
            direction = "server" if operation["action"] == "send" else "client"
            endpoint = operation["channel"]["$ref"].rsplit("/", 1)[-1]
            listed = self.by_endpoint.setdefault((direction, endpoint), {})
            for ref in operation["messages"]:
                message = messages[ref["$ref"].rsplit("/", 1)[-1]]
                listed[message["name"]] = message["payload"]["$ref"].removeprefix(SCHEMAS)
        self.server_schemas = {
            name
            for (direction, _), types in self.by_endpoint.items()
            if direction == "server"
            for name in types.values()
        }
        _close(self.document, self.server_schemas)
        self.registry = Registry().with_resource(URI, Resource(contents=self.document, specification=DRAFT7))
        self._validators: dict[str, Draft7Validator] = {}

    def types(self, direction: str, endpoint: str) -> set[str]:
        return set(self.by_endpoint.get((direction, endpoint), {}))

    def validator(self, schema_name: str) -> Draft7Validator:
        if schema_name not in self._validators:
            self._validators[schema_name] = Draft7Validator(
                {"$ref": f"{URI}{SCHEMAS}{schema_name}"},
                registry=self.registry,
                format_checker=Draft7Validator.FORMAT_CHECKER,
            )
        return self._validators[schema_name]

    def problem(self, frame: Any, *, endpoint: str, direction: str = "server") -> str | None:
        """Why `frame` is not a valid `direction` frame of `endpoint`, or None."""
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return f"not a frame with a string type: {frame!r}"
        frame_type = frame["type"]
        schema_name = self.by_endpoint.get((direction, endpoint), {}).get(frame_type)
        if schema_name is None:
            if direction == "server" and frame_type in PUBLISHED_TEST_TYPES:
                return None
            return f"/ws/{endpoint} has no {direction} frame {frame_type!r} in {DOCUMENT.name}"
        errors = sorted(self.validator(schema_name).iter_errors(frame), key=lambda error: list(error.path))
        if not errors:
            return None
        reasons = "; ".join(f"{'.'.join(map(str, error.path)) or '(frame)'}: {error.message}" for error in errors[:5])
        return f"{frame_type} on /ws/{endpoint} does not match {schema_name}: {reasons}"


@cache
def protocol_schema() -> ProtocolSchema:
    return ProtocolSchema(json.loads(DOCUMENT.read_text(encoding="utf-8")))


def endpoint_of(path: str) -> str | None:
    """`chat` for `/ws/chat?token=…` or `ws://host:port/ws/chat`, None for any other path."""
    path = path.split("?", 1)[0].rstrip("/")
    head, _, name = path.rpartition("/")
    return name if head.endswith("/ws") or head == "ws" else None


def check_server(frame: Any, endpoint: str | None) -> None:
    """Raise SchemaMismatch unless `frame` is a frame the server may send on `endpoint`."""
    if endpoint is None:
        return  # a path the server refuses: no frames to check
    problem = protocol_schema().problem(frame, endpoint=endpoint)
    if problem is not None:
        raise SchemaMismatch(problem)


def check_client(frame: Any, endpoint: str) -> None:
    """Raise SchemaMismatch unless `frame` is a frame a client may send on `endpoint`."""
    problem = protocol_schema().problem(frame, endpoint=endpoint, direction="client")
    if problem is not None:
        raise SchemaMismatch(problem)
