"""Every message type of docs/asyncapi.json, on every endpoint that lists it, against a real server.

One scenario drives a real daphne (with its private Redis) through every client frame type and
makes it send every server frame type. Every frame the clients read is checked against the
document as it arrives (tests/support/schema.py, closed: no unlisted field passes), every frame
they send is checked before it goes, and at the end each (endpoint, type) the document lists must
have been seen: a type the server sends that has no schema fails on arrival, and a schema no
frame exercised fails here.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from realtime.protocol import ENDPOINTS
from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.faults import staff_token
from tests.support.schema import check_client, protocol_schema
from tests.support.users import PASSWORD
from tests.support.world import create_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Pings every second, turns that time out after two: the scenario waits for both.
ENV = {"WEBSOCKET_HEARTBEAT_INTERVAL": "1", "COMBAT_TURN_TIMEOUT": "2"}
TOWN = "starter_town"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        cluster = Cluster(size=1, env=ENV).start()
    try:
        yield cluster[0]
    finally:
        cluster.stop()


class Sent:
    """The client frames the scenario sent, each checked against the document first."""

    def __init__(self) -> None:
        self.types: set[tuple[str, str]] = set()

    def _checked(self, client: WsClient, frame: dict[str, Any]) -> dict[str, Any]:
        assert client.endpoint is not None
        check_client(frame, client.endpoint)
        self.types.add((client.endpoint, frame["type"]))
        return frame

    async def send(self, client: WsClient, frame: dict[str, Any]) -> None:
        await client.send(self._checked(client, frame))

    async def request(self, client: WsClient, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return await client.request(self._checked(client, {**frame, "id": f"q{next(_ids)}"}), timeout)


async def http(server, method: str, path: str, token: str, body: Any = None) -> Any:
    status, payload = await asyncio.to_thread(server.request, method, path, body, token)
    assert status in (200, 201, 202), (method, path, status, payload)
    return payload


async def publish(server, staff: str, target: str, message: dict[str, Any]) -> None:
    await http(server, "POST", "/api/v1/websocket/publish", staff, {"target": target, "message": message})


async def login(server, name: str) -> str:
    tokens = await http(server, "POST", "/api/v1/auth/token/", "", {"username": name, "password": PASSWORD})
    return tokens["access"]


async def expect(client: WsClient, frame_type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
    """A frame of `frame_type` (with these fields) read already, or the next one to come."""
    for frame in client.received:
        if frame.get("type") == frame_type and all(frame.get(key) == value for key, value in match.items()):
            return frame
    return await client.recv_type(frame_type, timeout, **match)


async def drain(client: WsClient, seconds: float) -> None:
    """Read (and so check) whatever arrives within `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            await client.recv(remaining)
        except TimeoutError:
            return


async def every_endpoint(sent: Sent, client: WsClient, fresh_token: str) -> None:
    """The frames every endpoint understands, and the error for one it does not."""
    resumed = await sent.request(client, {"type": "resume", "streams": {}})
    assert resumed["type"] == "resumed", resumed
    assert (await sent.request(client, {"type": "ping"}))["type"] == "pong"
    await sent.send(client, {"type": "pong"})
    refreshed = await sent.request(client, {"type": "token_refresh", "token": fresh_token})
    assert refreshed["type"] == "token_refreshed", refreshed
    await client.send({"type": "no_such_type", "id": "e1"})
    assert (await expect(client, "error"))["code"] == "unknown_type"


async def game(server, sent: Sent, players: dict[str, dict[str, Any]], staff: str) -> None:
    alice, bob, carol = players["alice"], players["bob"], players["carol"]
    assert (await sent.request(alice["game"], {"type": "set_status", "status": "away"}))["type"] == "ack"
    await expect(alice["game"], "player_status", status="away")
    guild = alice["guild"]
    await http(server, "POST", f"/api/v1/guilds/{guild}/join/", bob["token"])
    await expect(alice["game"], "membership_changed", user_id=bob["id"], change="joined")
    await http(server, "POST", f"/api/v1/guilds/{guild}/invitations/", alice["token"], {"user_id": carol["id"]})
    await expect(carol["game"], "invitation", group_id=guild)
    for target, message in (
        (f"user:{alice['id']}", {"type": "achievement", "achievement": "first_kill"}),
        ("game", {"type": "system_announcement", "message": "Restart soon", "level": "warning"}),
        ("game", {"type": "game_state", "key": "season", "value": {"week": 3}}),
    ):
        await publish(server, staff, target, message)
        await expect(alice["game"], message["type"])


async def chat(sent: Sent, alice: dict, bob: dict, mod: WsClient) -> None:
    message = {"type": "chat_message", "channel": "global", "content": "Anyone up for the dragon?"}
    assert (await sent.request(alice["chat"], message))["type"] == "ack"
    await expect(alice["chat"], "chat_message")
    await sent.send(bob["chat"], {"type": "typing", "channel": "global", "is_typing": True})
    await expect(alice["chat"], "typing", user_id=bob["id"])
    history = await sent.request(alice["chat"], {"type": "history_request", "channel": "global", "limit": 5})
    assert history["type"] == "history" and history["messages"], history
    mute = {"type": "moderation", "action": "mute", "user_id": bob["id"], "duration_seconds": 60, "reason": "spam"}
    assert (await sent.request(mod, mute))["type"] == "ack"
    await expect(alice["chat"], "moderation_event", user_id=bob["id"])
    await expect(bob["chat"], "moderation_notice")
    await expect(bob["game"], "moderation_notice")


async def combat(sent: Sent, alice: dict) -> None:
    """A goblin (faster than a player: it strikes first), a turn left to time out, then a win."""
    client = alice["combat"]
    state = await sent.request(client, {"type": "combat_start", "monsters": ["goblin"]})
    assert state["type"] == "combat_state", state
    session = state["combat_session_id"]
    await expect(client, "combat_participant", event="joined")
    await expect(client, "combat_timeout", timeout=10)
    asked = await sent.request(client, {"type": "combat_state_request", "combat_session_id": session})
    assert asked["type"] == "combat_state", asked
    state = asked
    for _ in range(20):
        if state["status"] != "active":
            break
        if state["turn"]["actor"] == alice["id"]:
            action = {"type": "combat_action", "combat_session_id": session, "action": "attack"}
            reply = await sent.request(client, {**action, "target": "goblin-1", "round": state["round"]})
            assert reply["type"] in ("combat_action_result", "error"), reply  # a timeout may take the turn
        state = await client.recv_type("combat_state", timeout=10)
    await expect(client, "combat_end", timeout=10)


async def world(server, sent: Sent, alice: dict, bob: dict, staff: str) -> None:
    changed = await sent.request(alice["world"], {"type": "zone_change", "zone": TOWN})
    assert changed["type"] == "zone_changed", changed
    await expect(alice["world"], "nearby_players")
    entered = await sent.request(bob["world"], {"type": "zone_change", "zone": TOWN})
    await expect(alice["world"], "player_entered", user_id=bob["id"])
    move = {"type": "player_movement", "zone": TOWN, "x": entered["x"] + 5, "y": entered["y"]}
    assert (await sent.request(bob["world"], move))["type"] == "ack"
    await expect(alice["world"], "player_movement", user_id=bob["id"])
    nearby = await sent.request(alice["world"], {"type": "nearby_players_request"})
    assert nearby["type"] == "nearby_players" and nearby["players"], nearby
    event = {"type": "world_event", "event": "dragon_spawn", "message": "A dragon lands!"}
    await publish(server, staff, f"zone:{TOWN}", event)
    await expect(alice["world"], "world_event")
    await bob["world"].close()
    await expect(alice["world"], "player_left", user_id=bob["id"])


async def test_every_frame_type_of_the_document_is_seen_and_matches_it(server, unique):
    await db(create_default_zones)()
    names = {role: unique(role) for role in ("alice", "bob", "carol", "mod")}
    players: dict[str, dict[str, Any]] = {}
    for role, name in names.items():
        user_id, token = await asyncio.to_thread(server.register, name)
        players[role] = {"id": user_id, "token": token}
    await db(get_user_model().objects.filter(pk=players["mod"]["id"]).update)(is_moderator=True)
    _, staff = await staff_token(server, unique("staff"))
    alice, bob, carol = players["alice"], players["bob"], players["carol"]
    guild = await http(server, "POST", "/api/v1/guilds/", alice["token"], {"name": unique("g"), "open": True})
    alice["guild"] = guild["id"]

    opened: list[WsClient] = []

    async def connect(player: dict, endpoint: str) -> WsClient:
        client = await WsClient.open(f"{server.ws}/ws/{endpoint}", player["token"])
        opened.append(client)
        player[endpoint] = client
        return client

    sent = Sent()
    for endpoint in ENDPOINTS:
        await every_endpoint(sent, await connect(alice, endpoint), await login(server, names["alice"]))
    for endpoint in ("game", "chat", "world"):
        await connect(bob, endpoint)
    await connect(carol, "game")
    mod = await connect(players["mod"], "chat")

    await game(server, sent, players, staff)
    await chat(sent, alice, bob, mod)
    await combat(sent, alice)
    await world(server, sent, alice, bob, staff)
    await asyncio.gather(*(drain(client, 1.5) for client in opened if client is not bob["world"]))
    for client in opened:
        await client.close()

    schema = protocol_schema()
    seen = {(client.endpoint, frame["type"]) for client in opened for frame in client.received}
    listed = {(endpoint, name) for endpoint in ENDPOINTS for name in schema.types("server", endpoint)}
    assert sorted(listed - seen) == [], "server frames the document lists that the server never sent"
    listed = {(endpoint, name) for endpoint in ENDPOINTS for name in schema.types("client", endpoint)}
    assert sorted(listed - sent.types) == [], "client frames the document lists that the scenario never sent"
