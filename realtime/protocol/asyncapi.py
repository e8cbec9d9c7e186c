"""The protocol as an AsyncAPI 3 document (docs/asyncapi.json), built from the code.

Client frames are described by the schemas the consumers validate them with, server frames by
the types of `realtime.protocol.events`, so the document says what the server accepts and sends,
not what someone remembered to write down. The caller hands over the endpoints (`EndpointFrames`,
read from the routes and consumers); `manage.py asyncapi` writes the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter

from realtime.protocol import PROTOCOL_TYPES, PROTOCOL_VERSION, ClientFrame
from realtime.protocol.events import SERVER_FRAMES, FrameId, frame_type, server_endpoints

SCHEMAS = "#/components/schemas/"
# The wire order of the fields every frame may end with (docs/protocol.md §2, §12).
TRAILING = ("timestamp", "stream", "offset", "epoch", "id")

DESCRIPTION = """\
The rpgrealtime WebSocket protocol, generated from the server's code by `manage.py asyncapi`: \
client frames from the schemas the server validates them with, server frames from the types \
in `realtime/protocol/events/`. docs/protocol.md explains what each frame means and when it \
is sent. Operations are from the server's side: `send` is server → client, `receive` is \
client → server.

Every frame is one JSON object in a text frame with a string `type`. A client frame may carry an \
`id`; every direct reply repeats it. Frames of a recoverable stream end with `stream`, `offset` \
and `epoch` (docs/protocol.md §12). The server frames list every field this version sends; a \
later minor version may add fields, message types and codes, which clients must ignore \
(docs/protocol.md §1, Compatibility)."""


class DocumentError(ValueError):
    """The code does not describe the protocol completely (a type without a schema, a clash)."""


@dataclass(frozen=True, slots=True)
class EndpointFrames:
    """One WebSocket endpoint: its name (`chat`), its path and the schema of each client frame type."""

    name: str
    address: str
    client_frames: Mapping[str, type[ClientFrame] | None]


def pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _without_titles(schema: Any) -> Any:
    """pydantic's generated titles ("Message Id") only repeat the names."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs"):
            cleaned[key] = {name: _without_titles(sub) for name, sub in value.items()}
        elif key in ("examples", "default", "const", "enum"):
            cleaned[key] = value
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


def _published(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema as the document shows it: fields in wire order, no examples (they go with the
    message), no `additionalProperties: false` (clients ignore what they do not know)."""
    schema = {key: value for key, value in schema.items() if key != "examples"}
    if schema.get("additionalProperties") is False:
        del schema["additionalProperties"]
    properties = schema.get("properties")
    if not properties:
        return schema
    rank = {name: index for index, name in enumerate(TRAILING, start=1)}
    names = sorted(properties, key=lambda name: -1 if name == "type" else rank.get(name, 0))
    ordered = {**schema, "properties": {name: properties[name] for name in names}}
    if "required" in schema:
        ordered["required"] = [name for name in names if name in schema["required"]]
    return ordered


class _Components:
    """The document's shared schemas; one name means one schema."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, name: str, schema: dict[str, Any]) -> None:
        known = self.schemas.setdefault(name, schema)
        if known != schema:
            raise DocumentError(f"two different schemas are called {name!r}: rename one of them")

    def take(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A generated schema's definitions become components; returns the schema without them."""
        schema = _without_titles(schema)
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, _published(definition))
        return schema


def summary(description: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join((description or "").strip().split("\n\n")[0].split())


def _examples(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"payload": example} for example in schema.pop("examples", [])]


def _server_messages(components: _Components) -> dict[str, dict[str, Any]]:
    messages = {}
    for frame_class in SERVER_FRAMES:
        name, message_type = frame_class.__name__, frame_type(frame_class)
        schema = components.take(TypeAdapter(frame_class).json_schema(ref_template=SCHEMAS + "{model}"))
        examples = _examples(schema)
        components.add(name, _published(schema))
        messages[name] = {
            "name": message_type,
            "title": f"{message_type} (server → client)",
            "summary": summary(schema.get("description")),
            "payload": {"$ref": SCHEMAS + name},
            "examples": examples,
        }
    return messages


def _client_schema(message_type: str, model: type[BaseModel], components: _Components) -> dict[str, Any]:
    schema = components.take(model.model_json_schema(ref_template=SCHEMAS + "{model}", mode="validation"))
    schema["properties"] = {
        "type": {"const": message_type, "type": "string"},
        **schema.get("properties", {}),
        "id": {"$ref": SCHEMAS + "FrameId"},
    }
    schema["required"] = ["type", *schema.get("required", [])]
    schema.setdefault("type", "object")
    return schema


def _client_messages(
    endpoints: Sequence[EndpointFrames], server_types: set[str], components: _Components
) -> dict[str, dict[str, Any]]:
    schemas: dict[str, type[ClientFrame]] = {}
    for endpoint in endpoints:
        for message_type, model in endpoint.client_frames.items():
            if model is None:
                raise DocumentError(f"/ws/{endpoint.name} handles {message_type!r} without a schema")
            if schemas.setdefault(message_type, model) is not model:
                raise DocumentError(f"{message_type!r} has different schemas on different endpoints")
    messages = {}
    for message_type, model in schemas.items():
        name = f"Client{pascal(message_type)}" if message_type in server_types else pascal(message_type)
        schema = _client_schema(message_type, model, components)
        examples = _examples(schema)
        components.add(model.__name__, _published(schema))
        messages[name] = {
            "name": message_type,
            "title": f"{message_type} (client → server)",
            "summary": summary(model.__doc__),
            "payload": {"$ref": SCHEMAS + model.__name__},
            "examples": examples,
        }
    return messages


def _check_complete(messages: Iterable[dict[str, Any]]) -> None:
    described = {message["name"] for message in messages}
    if missing := PROTOCOL_TYPES - described:
        raise DocumentError(f"message types without a schema: {', '.join(sorted(missing))}")
    if unknown := described - PROTOCOL_TYPES:
        raise DocumentError(f"types missing from PROTOCOL_TYPES: {', '.join(sorted(unknown))}")


def build(endpoints: Sequence[EndpointFrames]) -> dict[str, Any]:
    """The AsyncAPI 3 document of these endpoints. Raises DocumentError when the code leaves a
    message type undescribed."""
    components = _Components()
    components.take(TypeAdapter(FrameId).json_schema(ref_template=SCHEMAS + "{model}"))
    server = _server_messages(components)
    client = _client_messages(endpoints, {message["name"] for message in server.values()}, components)
    _check_complete([*server.values(), *client.values()])
    server_on = {frame_class.__name__: server_endpoints(frame_class) for frame_class in SERVER_FRAMES}
    client_names = {message["name"]: name for name, message in client.items()}

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for endpoint in endpoints:
        sent = [name for name in server if endpoint.name in server_on[name]]
        received = [client_names[message_type] for message_type in endpoint.client_frames]
        channels[endpoint.name] = {
            "address": endpoint.address,
            "title": endpoint.address,
            "description": f"The `{endpoint.name}` endpoint; see docs/protocol.md.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in [*sent, *received]},
        }
        for action, names in (("send", sent), ("receive", received)):
            operations[f"{endpoint.name}{action.capitalize()}"] = {
                "action": action,
                "title": f"{'The server sends on' if action == 'send' else 'Clients send on'} {endpoint.address}",
                "channel": {"$ref": f"#/channels/{endpoint.name}"},
                "messages": [{"$ref": f"#/channels/{endpoint.name}/messages/{name}"} for name in names],
            }
    return {
        "asyncapi": "3.1.0",
        "info": {"title": "rpgrealtime WebSocket protocol", "version": PROTOCOL_VERSION, "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "messages": {**server, **client},
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as committed: stable, indented, one trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
