"""docs/asyncapi.json: generated from the code, committed up to date, complete and valid.

What the server really sends is checked against it by every test that reads frames
(tests/support/schema.py) and, type by type, by tests/integration/test_protocol_schema.py.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from jsonschema import Draft7Validator

from realtime.management.commands.asyncapi import DEFAULT_OUTPUT, routed_endpoints
from realtime.protocol import ENDPOINTS, PROTOCOL_TYPES, ClientFrame
from realtime.protocol.asyncapi import DocumentError, EndpointFrames, build, render
from realtime.protocol.events import SERVER_FRAMES, frame_type, server_endpoints
from tests.support.schema import DOCUMENT, ProtocolSchema, protocol_schema

NOW = "2026-11-26T10:00:00.000Z"


@pytest.fixture(scope="module")
def document():
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def test_the_committed_document_is_what_the_code_describes():
    assert DEFAULT_OUTPUT == DOCUMENT
    call_command("asyncapi", "--check")  # raises CommandError when stale


def test_check_fails_on_a_stale_or_missing_file_and_the_command_writes_it(tmp_path, capsys):
    target = tmp_path / "asyncapi.json"
    with pytest.raises(CommandError, match="out of date"):
        call_command("asyncapi", "--check", "--output", str(target))
    target.write_text(DOCUMENT.read_text(encoding="utf-8").replace('"1.1"', '"0.9"', 1), encoding="utf-8")
    with pytest.raises(CommandError, match="out of date"):
        call_command("asyncapi", "--check", "--output", str(target))
    call_command("asyncapi", "--output", str(target))
    assert target.read_text(encoding="utf-8") == DOCUMENT.read_text(encoding="utf-8")
    call_command("asyncapi", "--check", "--output", str(target))


def test_an_unwritable_output_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("asyncapi", "--output", str(tmp_path / "missing" / "asyncapi.json"))


def test_every_protocol_type_has_a_message_and_nothing_else_does(document):
    names = {message["name"] for message in document["components"]["messages"].values()}
    assert names == PROTOCOL_TYPES


def test_each_endpoint_lists_exactly_what_its_consumer_handles_and_the_server_sends(document):
    schema = ProtocolSchema(document)
    assert list(document["channels"]) == list(ENDPOINTS)
    for endpoint in routed_endpoints():
        assert document["channels"][endpoint.name]["address"] == f"/ws/{endpoint.name}"
        assert schema.types("client", endpoint.name) == set(endpoint.client_frames)
        for message_type, model in endpoint.client_frames.items():
            assert schema.by_endpoint["client", endpoint.name][message_type] == model.__name__
        sent = {frame_type(frame) for frame in SERVER_FRAMES if endpoint.name in server_endpoints(frame)}
        assert schema.types("server", endpoint.name) == sent


def test_every_schema_is_valid_json_schema(document):
    for schema in document["components"]["schemas"].values():
        Draft7Validator.check_schema(schema)  # raises SchemaError


def test_every_example_matches_its_message(document):
    schema = protocol_schema()
    checked = 0
    for message in document["components"]["messages"].values():
        direction = "client" if "client → server" in message["title"] else "server"
        for example in message["examples"]:
            endpoint = next(e for e in ENDPOINTS if message["name"] in schema.types(direction, e))
            assert schema.problem(example["payload"], endpoint=endpoint, direction=direction) is None
            checked += 1
    assert checked >= len(PROTOCOL_TYPES)


def test_the_checker_refuses_what_the_document_does_not_allow():
    schema = protocol_schema()
    ping = {"type": "ping", "timestamp": NOW}
    assert schema.problem(ping, endpoint="game") is None
    assert "does not match '^" in schema.problem({**ping, "timestamp": "2026-11-26T10:00:00Z"}, endpoint="game")
    assert "'extra' was unexpected" in schema.problem({**ping, "extra": 1}, endpoint="game")
    assert "no server frame 'ack'" in schema.problem({"type": "ack", "id": 1}, endpoint="combat")
    assert "no server frame 'brand_new'" in schema.problem({"type": "brand_new"}, endpoint="chat")
    assert "not a frame" in schema.problem(["ping"], endpoint="chat")
    # Published types keep the publisher's fields (docs/protocol.md §8); clients may add their own.
    announcement = {"type": "system_announcement", "message": "Hi", "level": "info", "timestamp": NOW, "color": "red"}
    assert schema.problem(announcement, endpoint="game") is None
    assert schema.problem({"type": "ping", "extra": 1}, endpoint="world", direction="client") is None
    assert "required" in schema.problem({"type": "typing", "channel": "global"}, endpoint="chat", direction="client")


class _NoSchemaIn(ClientFrame):
    pass


def test_the_builder_refuses_an_incomplete_description():
    endpoints = routed_endpoints()
    with pytest.raises(DocumentError, match="without a schema"):
        build([*endpoints, EndpointFrames("extra", "/ws/extra", {"ping": None})])
    with pytest.raises(DocumentError, match="different schemas"):
        build([*endpoints, EndpointFrames("extra", "/ws/extra", {"ping": _NoSchemaIn})])
    with pytest.raises(DocumentError, match="missing from PROTOCOL_TYPES: brand_new"):
        build([*endpoints, EndpointFrames("extra", "/ws/extra", {"brand_new": _NoSchemaIn})])
    chat = next(endpoint for endpoint in endpoints if endpoint.name == "chat")
    only_typing = EndpointFrames("chat", "/ws/chat", {"typing": chat.client_frames["typing"]})
    with pytest.raises(DocumentError, match=r"without a schema: history_request, moderation$"):
        build([*(endpoint for endpoint in endpoints if endpoint is not chat), only_typing])


def test_rendering_is_stable():
    document = build(routed_endpoints())
    assert render(document) == render(json.loads(render(document)))
    assert render(document).endswith("}\n")
