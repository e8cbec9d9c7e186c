"""The OpenAPI document of the HTTP routes (/api/schema/): served to anyone, valid, complete, and
true: real answers of the routes match the responses it documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.users import PASSWORD, access_token, make_publisher, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ROUTES = {
    "/api/v1/auth/register/": {"post"},
    "/api/v1/auth/token/": {"post"},
    "/api/v1/auth/token/refresh/": {"post"},
    "/api/v1/auth/me/": {"get"},
    "/api/v1/guilds/": {"post"},
    "/api/v1/guilds/leave/": {"post"},
    "/api/v1/guilds/{group_id}/join/": {"post"},
    "/api/v1/guilds/{group_id}/invitations/": {"post"},
    "/api/v1/parties/": {"post"},
    "/api/v1/parties/leave/": {"post"},
    "/api/v1/parties/{group_id}/join/": {"post"},
    "/api/v1/parties/{group_id}/invitations/": {"post"},
    "/api/v1/websocket/health": {"get"},
    "/api/v1/websocket/metrics": {"get"},
    "/api/v1/websocket/publish": {"post"},
    "/metrics": {"get"},
    "/play/api/roster/": {"get"},
}


def openapi() -> dict[str, Any]:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def test_the_document_is_served_to_anyone_and_lists_every_route():
    document = openapi()
    assert document["openapi"].startswith("3.1")
    assert {path: set(operations) for path, operations in document["paths"].items()} == ROUTES
    yaml = Client().get("/api/schema/")
    assert yaml.status_code == 200 and yaml.content.startswith(b"openapi: 3.1")


def test_spectacular_validates_it_without_a_warning(tmp_path):
    target = tmp_path / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert target.read_text().startswith("openapi: 3.1")


class Documented:
    """Checks answers against the responses of the document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource(contents=document, specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:openapi", resource)
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, route: str, method: str, response: Any) -> Any:
        documented = self.document["paths"][route][method]["responses"]
        status = response.status_code
        assert str(status) in documented, f"{method} {route} answered {status}, which it does not document"
        body = json.loads(response.content) if response.content else None
        content = documented[str(status)].get("content", {}).get("application/json")
        if content is not None:
            ref = content["schema"].get("$ref")
            schema = {"$ref": f"urn:openapi{ref}"} if ref else content["schema"]
            errors = list(Draft202012Validator(schema, registry=self.registry).iter_errors(body))
            assert not errors, f"{method} {route} {status}: {[error.message for error in errors]}"
        self.checked.add((route, method, status))
        return body


def test_real_answers_match_the_documented_responses(settings):
    settings.WEBSOCKET_METRICS_PUBLIC = False
    documented = Documented(openapi())
    client = Client()

    def call(method: str, route: str, path: str, body: Any = None, token: str | None = None, **expected: Any):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        if method == "get":
            response = client.get(path, **headers)
        else:
            response = client.post(path, body or {}, content_type="application/json", **headers)
        return documented.check(route, method, response)

    call("post", "/api/v1/auth/register/", "/api/v1/auth/register/", {"username": "alice", "password": PASSWORD})
    call("post", "/api/v1/auth/register/", "/api/v1/auth/register/", {"username": "ALICE", "password": PASSWORD})
    call("post", "/api/v1/auth/register/", "/api/v1/auth/register/", {"username": "a", "password": "x"})
    tokens = call("post", "/api/v1/auth/token/", "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD})
    call("post", "/api/v1/auth/token/", "/api/v1/auth/token/", {"username": "alice", "password": "wrong"})
    call("post", "/api/v1/auth/token/refresh/", "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    call("post", "/api/v1/auth/token/refresh/", "/api/v1/auth/token/refresh/", {"refresh": "nonsense"})
    alice = tokens["access"]
    bob = access_token(make_user("bob"))
    guild = call("post", "/api/v1/guilds/", "/api/v1/guilds/", {"name": "Lantern Keepers"}, alice)
    call("post", "/api/v1/guilds/", "/api/v1/guilds/", {"name": "lantern keepers"}, bob)
    invite = f"/api/v1/guilds/{guild['id']}/invitations/"
    call("post", "/api/v1/guilds/{group_id}/invitations/", invite, {"username": "bob"}, alice)
    call("post", "/api/v1/guilds/{group_id}/invitations/", invite, {"username": "alice"}, bob)
    call("get", "/api/v1/auth/me/", "/api/v1/auth/me/", token=bob)
    call("get", "/api/v1/auth/me/", "/api/v1/auth/me/")
    call("get", "/play/api/roster/", "/play/api/roster/", token=bob)
    call("post", "/api/v1/guilds/{group_id}/join/", f"/api/v1/guilds/{guild['id']}/join/", token=bob)
    call("post", "/api/v1/guilds/leave/", "/api/v1/guilds/leave/", token=bob)
    call("post", "/api/v1/guilds/leave/", "/api/v1/guilds/leave/", token=bob)
    party = call("post", "/api/v1/parties/", "/api/v1/parties/", {}, alice)
    call("post", "/api/v1/parties/{group_id}/join/", f"/api/v1/parties/{party['id']}/join/", token=bob)
    call("get", "/play/api/roster/", "/play/api/roster/", token=alice)
    staff = access_token(make_publisher())
    call("get", "/api/v1/websocket/metrics", "/api/v1/websocket/metrics", token=bob)
    publish = {"target": "game", "message": {"type": "game_state", "key": "season", "value": 3}}
    call("post", "/api/v1/websocket/publish", "/api/v1/websocket/publish", publish, staff)
    call("post", "/api/v1/websocket/publish", "/api/v1/websocket/publish", {"target": "nowhere", "message": {}}, staff)
    call("post", "/api/v1/websocket/publish", "/api/v1/websocket/publish", publish, bob)
    call("get", "/api/v1/websocket/health", "/api/v1/websocket/health")
    assert {(route, status) for route, _, status in documented.checked} >= {
        ("/api/v1/auth/register/", 201),
        ("/api/v1/auth/register/", 409),
        ("/api/v1/auth/me/", 200),
        ("/api/v1/guilds/{group_id}/invitations/", 201),
        ("/play/api/roster/", 200),
        ("/api/v1/websocket/publish", 202),
    }
