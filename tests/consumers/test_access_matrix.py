"""Who may do what: every client message type of every endpoint, and the HTTP routes, for every
kind of caller, written as tables. Nobody reads or writes what is not theirs.

Callers:
  anonymous   no token
  user        an ordinary player, in no guild or party, in no fight
  member      owns what the tests look at: in guild G1 and party P1, in fight S, a player in the world
  outsider    in another guild (G2) and party (P2), not a participant of S
  moderator   has the moderator role
  banned      banned until tomorrow
  expired     presents an expired access token
  staff       (HTTP) staff with every permission; staff_noperm: staff without any

Expected outcomes: `ok` = a result (no `error`), a code = that `error` code, `silent` = accepted
with no reply (a client's `pong`), `-` = cannot get
that far (refused at connect: see CONNECT); HTTP: the status, `login` = redirected to the admin
login page, 302 = done and redirected back (the admin's post/redirect/get).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from accounts.models import Guild, Party
from realtime.models import ChatMessage
from tests.support.communicator import Client as WsClient
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

WS_ROLES = ("anonymous", "user", "member", "outsider", "moderator")

# Connecting, per endpoint, for callers who never get a connection (or get one anonymously).
CONNECT = """
endpoint  anonymous                     banned       expired
game      established                   4403:banned  4401:token_expired
chat      4401:authentication_required  4403:banned  4401:token_expired
combat    4401:authentication_required  4403:banned  4401:token_expired
world     established                   4403:banned  4401:token_expired
"""

# Every client message type, per endpoint, once connected.
MATRIX = """
row                           anonymous                user           member          outsider       moderator
game.ping                     ok                       ok             ok              ok             ok
game.pong                     silent                   silent         silent          silent         silent
game.set_status               authentication_required  ok             ok              ok             ok
game.token_refresh_own        authentication_required  ok             ok              ok             ok
game.token_refresh_other      authentication_required  invalid_token  invalid_token   invalid_token  invalid_token
chat.ping                     -                        ok             ok              ok             ok
chat.pong                     -                        silent         silent          silent         silent
chat.message_global           -                        ok             ok              ok             ok
chat.message_guild            -                        forbidden      ok              ok             forbidden
chat.message_party            -                        forbidden      ok              ok             forbidden
chat.message_private          -                        ok             ok              ok             ok
chat.typing_guild             -                        forbidden      ok              ok             forbidden
chat.typing_party             -                        forbidden      ok              ok             forbidden
chat.typing_private           -                        ok             ok              ok             ok
chat.history_global           -                        ok             ok              ok             ok
chat.history_guild            -                        forbidden      ok              ok             forbidden
chat.history_party            -                        forbidden      ok              ok             forbidden
chat.history_private          -                        ok             ok              ok             ok
chat.moderation_mute          -                        forbidden      forbidden       forbidden      ok
chat.moderation_delete        -                        forbidden      forbidden       forbidden      ok
chat.moderation_kick          -                        forbidden      forbidden       forbidden      ok
chat.moderation_ban           -                        forbidden      forbidden       forbidden      ok
chat.token_refresh_own        -                        ok             ok              ok             ok
chat.token_refresh_other      -                        invalid_token  invalid_token   invalid_token  invalid_token
combat.ping                   -                        ok             ok              ok             ok
combat.pong                   -                        silent         silent          silent         silent
combat.state_request          -                        forbidden      ok              forbidden      forbidden
combat.action                 -                        forbidden      ok              forbidden      forbidden
combat.start                  -                        ok             invalid_action  ok             ok
combat.token_refresh_own      -                        ok             ok              ok             ok
combat.token_refresh_other    -                        invalid_token  invalid_token   invalid_token  invalid_token
world.ping                    ok                       ok             ok              ok             ok
world.pong                    silent                   silent         silent          silent         silent
world.zone_change             ok                       ok             ok              ok             ok
world.nearby                  ok                       ok             ok              ok             ok
world.movement_naming_member  authentication_required  ok             ok              ok             ok
world.token_refresh_own       authentication_required  ok             ok              ok             ok
world.token_refresh_other     authentication_required  invalid_token  invalid_token   invalid_token  invalid_token
"""

# HTTP routes. JWT callers send `Authorization: Bearer`; the admin uses a session.
HTTP = """
route                  anonymous  user   moderator  banned  expired  staff_noperm  staff
GET me                 401        200    200        200     401      200           200
POST guilds            401        201    201        201     401      201           201
POST guild_join        401        200    200        200     401      200           200
POST closed_guild_join 401        403    403        403     401      403           403
POST guild_invite      401        403    403        403     401      403           403
POST party_leave       401        409    409        409     401      409           409
GET health             200        200    200        200     200      200           200
GET metrics_json       401        403    403        403     401      200           200
POST publish           401        403    403        403     401      403           202
GET prometheus         200        200    200        200     200      200           200
GET admin_connections  login      login  login      login   login    403           200
POST admin_announce    login      login  login      login   login    403           302
"""


def table(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A whitespace table: the header's first cell names the row key column."""
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    width = len(header) - 1
    parsed = {}
    for cells in rows:
        key = " ".join(cells[: len(cells) - width])
        parsed[key] = dict(zip(header[1:], cells[len(cells) - width :], strict=True))
    return header[1:], parsed


@pytest.fixture
def relaxed(settings):
    settings.WEBSOCKET_RATE_LIMIT = "0"
    settings.CHAT_RATE_LIMIT = 0
    return settings


async def scenario() -> dict[str, Any]:
    g1, g2 = await db(Guild.objects.create)(name="G1"), await db(Guild.objects.create)(name="G2")
    p1, p2 = await db(Party.objects.create)(name="P1"), await db(Party.objects.create)(name="P2")
    users = {
        "user": await db(make_user)(),
        "member": await db(make_user)(guild=g1, party=p1),
        "outsider": await db(make_user)(guild=g2, party=p2),
        "moderator": await db(make_user)(is_moderator=True),
        "banned": await db(make_user)(banned_until=timezone.now() + timedelta(days=1)),
        "victim": await db(make_user)(),
    }
    tokens = {role: access_token(user) for role, user in users.items()}
    tokens["expired"] = access_token(users["user"], lifetime=timedelta(seconds=-1))
    return {"users": users, "tokens": tokens, "ids": {role: str(user.pk) for role, user in users.items()}}


class Recording(WsClient):
    """A client that keeps every frame it received, to check afterwards what reached whom."""

    def __init__(self, inner: WsClient) -> None:
        super().__init__(inner.communicator, inner.established)
        self.seen: list[dict[str, Any]] = []

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        frame = await super().recv(timeout)
        self.seen.append(frame)
        return frame


async def open_as(endpoint: str, role: str, ctx: dict[str, Any]) -> WsClient:
    token = None if role == "anonymous" else ctx["tokens"][role]
    return await connect(f"/ws/{endpoint}", token, expect_established=False)


async def outcome_of_connect(endpoint: str, role: str, ctx: dict[str, Any]) -> str:
    client = await open_as(endpoint, role, ctx)
    first = await client.recv()
    if first["type"] == "connection_established":
        await client.close()
        return "established"
    return f"{await client.expect_close()}:{first['code']}"


async def test_connecting_as_anonymous_banned_or_expired():
    ctx = await scenario()
    roles, rows = table(CONNECT)
    failures = []
    for endpoint, expected in rows.items():
        for role in roles:
            got = await outcome_of_connect(endpoint, role, ctx)
            if got != expected[role]:
                failures.append(f"{endpoint} as {role}: expected {expected[role]}, got {got}")
    assert not failures, "\n".join(failures)


def frames(ctx: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ids = ctx["ids"]
    session = ctx["session_id"]
    return {
        "ping": {"type": "ping"},
        "pong": {"type": "pong"},
        "set_status": {"type": "set_status", "status": "busy"},
        "message_global": {"type": "chat_message", "channel": "global", "content": "hello all"},
        "message_guild": {"type": "chat_message", "channel": "guild", "content": "guild note from {role}"},
        "message_party": {"type": "chat_message", "channel": "party", "content": "party note from {role}"},
        "message_private": {"type": "chat_message", "channel": "private", "to": ids["victim"], "content": "hi"},
        "typing_guild": {"type": "typing", "channel": "guild", "is_typing": True},
        "typing_party": {"type": "typing", "channel": "party", "is_typing": False},
        "typing_private": {"type": "typing", "channel": "private", "to": ids["victim"], "is_typing": True},
        "history_global": {"type": "history_request", "channel": "global"},
        "history_guild": {"type": "history_request", "channel": "guild"},
        "history_party": {"type": "history_request", "channel": "party"},
        "history_private": {"type": "history_request", "channel": "private", "with": ids["victim"]},
        "moderation_mute": {"type": "moderation", "action": "mute", "user_id": ids["victim"], "duration_seconds": 5},
        "moderation_delete": {"type": "moderation", "action": "delete_message", "message_id": ctx["spam_id"]},
        "moderation_kick": {"type": "moderation", "action": "kick", "user_id": ids["victim"]},
        "moderation_ban": {"type": "moderation", "action": "ban", "user_id": ids["victim"], "duration_seconds": 5},
        "state_request": {"type": "combat_state_request", "combat_session_id": session},
        # Nobody may act in someone else's fight; the member acts in its own (defend: always valid).
        "action": {"type": "combat_action", "combat_session_id": session, "action": "defend"},
        "start": {"type": "combat_start", "monsters": ["goblin"]},
        # A fresh token of your own keeps the connection; someone else's is refused.
        "token_refresh_own": {"type": "token_refresh", "token": "{own_token}"},
        "token_refresh_other": {"type": "token_refresh", "token": ctx["tokens"]["victim"]},
        "zone_change": {"type": "zone_change", "zone": "dark_forest"},
        "nearby": {"type": "nearby_players_request"},
        # Naming the member's player: `user_id` is not a field of the frame; only your own moves.
        "movement_naming_member": {
            "type": "player_movement",
            "zone": "dark_forest",
            "x": "{x}",
            "y": "{x}",
            "user_id": ids["member"],
        },
    }


SECRETS = ("g1 secret", "p1 secret", "dm secret")
SPOTS = {"anonymous": 101, "user": 102, "member": 110, "outsider": 104, "moderator": 105}


def fill(value: Any, role: str, ctx: dict[str, Any]) -> Any:
    """Per-caller values: `{role}` in texts, `{x}` for the caller's own spot in the world,
    `{own_token}` for a fresh access token of the caller."""
    if value == "{x}":
        return SPOTS[role]
    if value == "{own_token}":
        return access_token(ctx["users"][role]) if role != "anonymous" else "none"
    return value.format(role=role) if isinstance(value, str) else value


async def test_every_message_type_for_every_kind_of_caller(relaxed):
    ctx = await scenario()
    users, ids = ctx["users"], ctx["ids"]
    # What only the member (and the victim, for the private message) may ever read.
    await db(ChatMessage.objects.create)(
        channel="guild",
        conversation=f"guild:{users['member'].guild_id}",
        sender=users["member"],
        sender_name="m",
        content="g1 secret",
    )
    await db(ChatMessage.objects.create)(
        channel="party",
        conversation=f"party:{users['member'].party_id}",
        sender=users["member"],
        sender_name="m",
        content="p1 secret",
    )
    a, b = sorted((ids["member"], ids["victim"]))
    await db(ChatMessage.objects.create)(
        channel="private",
        conversation=f"private:{a}:{b}",
        sender=users["member"],
        sender_name="m",
        recipient=users["victim"],
        content="dm secret",
    )
    spam = await db(ChatMessage.objects.create)(
        channel="global", conversation="global", sender=users["victim"], sender_name="v", content="spam"
    )
    ctx["spam_id"] = str(spam.message_id)
    clients: dict[tuple[str, str], Recording] = {}
    for endpoint in ("game", "chat", "combat", "world"):
        for role in WS_ROLES:
            client = Recording(await open_as(endpoint, role, ctx))
            if (await client.recv())["type"] == "connection_established":
                clients[endpoint, role] = client
    fight = await clients["combat", "member"].request({"type": "combat_start", "monsters": ["goblin"]})
    ctx["session_id"] = fight["combat_session_id"]
    await clients["world", "member"].request({"type": "zone_change", "zone": "dark_forest"})
    await clients["world", "anonymous"].request({"type": "zone_change", "zone": "dark_forest", "x": 100, "y": 100})
    messages = frames(ctx)

    roles, rows = table(MATRIX)
    failures = []
    for row, expected_by_role in rows.items():
        endpoint, name = row.split(".", 1)
        for role in roles:
            expected = expected_by_role[role]
            client = clients.get((endpoint, role))
            if expected == "-":
                assert client is None, f"{row}: {role} should not be connected"
                continue
            frame = {key: fill(value, role, ctx) for key, value in messages[name].items()}
            if expected == "silent":  # answers nothing: a ping right after gets the next reply
                await client.send({**frame, "id": f"{row}:{role}"})
                reply = await client.request({"type": "ping", "id": f"after:{row}:{role}"})
                if any(f.get("id") == f"{row}:{role}" for f in client.seen):
                    failures.append(f"{row} as {role}: expected no reply")
                continue
            reply = await client.request({**frame, "id": f"{row}:{role}"})
            got = reply["code"] if reply["type"] == "error" else "ok"
            if got != expected:
                failures.append(f"{row} as {role}: expected {expected}, got {got} ({reply})")
    assert not failures, "\n".join(failures)

    # Reads that succeed show only the caller's own conversations ...
    for role, client in clients.items():
        leaked = [frame for frame in client.seen if any(secret in str(frame) for secret in SECRETS)]
        if role[1] != "member":
            assert not leaked, (role, leaked)
    outsider_guild = await clients["chat", "outsider"].request({"type": "history_request", "channel": "guild"})
    assert [m["content"] for m in outsider_guild["messages"]] == ["guild note from outsider"]  # G2's, not G1's
    member_guild = await clients["chat", "member"].request({"type": "history_request", "channel": "guild"})
    assert [m["content"] for m in member_guild["messages"]] == ["g1 secret", "guild note from member"]
    # ... and broadcasts reached only their audience.
    for reader, writer in (("member", "outsider"), ("outsider", "member")):
        heard = {f.get("content") for f in clients["chat", reader].seen if f["type"] == "chat_message"}
        assert not heard & {f"guild note from {writer}", f"party note from {writer}"}, (reader, heard)
    # Everyone moved only their own player, whoever the frame named.
    near = await clients["world", "anonymous"].request({"type": "nearby_players_request"})
    spots = {p["user_id"]: (p["x"], p["y"]) for p in near["players"]}
    assert spots == {ids[role]: (SPOTS[role], SPOTS[role]) for role in ("user", "member", "outsider", "moderator")}
    for client in clients.values():
        await client.close()


def http_call(route: str, ctx: dict[str, Any], client: Client, headers: dict[str, str]) -> str:
    method, name = route.split()
    guild_id = ctx["guild_id"]
    paths = {
        "me": ("/api/v1/auth/me/", None),
        "guilds": ("/api/v1/guilds/", {"name": f"guild-{len(ctx['made'])}"}),
        "guild_join": (f"/api/v1/guilds/{guild_id}/join/", None),
        "closed_guild_join": (f"/api/v1/guilds/{ctx['closed_guild_id']}/join/", None),
        "guild_invite": (f"/api/v1/guilds/{ctx['closed_guild_id']}/invitations/", {"user_id": ctx["invitee_id"]}),
        "party_leave": ("/api/v1/parties/leave/", None),
        "health": ("/api/v1/websocket/health", None),
        "metrics_json": ("/api/v1/websocket/metrics", None),
        "publish": (
            "/api/v1/websocket/publish",
            {"target": "game", "message": {"type": "game_state", "key": "k", "value": 1}},
        ),
        "prometheus": ("/metrics", None),
        "admin_connections": ("/admin/realtime/connection/", None),
        "admin_announce": ("/admin/realtime/instance/dashboard/", {"message": "hi", "level": "info"}),
    }
    path, body = paths[name]
    ctx["made"].append(name)
    if name.startswith("admin"):
        response = client.post(path, body) if method == "POST" else client.get(path)
    elif method == "POST":
        response = client.post(path, body or {}, content_type="application/json", headers=headers)
    else:
        response = client.get(path, headers=headers)
    if response.status_code == 302 and "/admin/login/" in response["Location"]:
        return "login"
    return str(response.status_code)


def test_http_routes_for_every_kind_of_caller(settings):
    settings.AUTH_TOKEN_THROTTLE = "10000/min"
    guild = Guild.objects.create(name="Open", open=True)
    users = {
        "user": make_user(),
        "moderator": make_user(is_moderator=True),
        "banned": make_user(banned_until=timezone.now() + timedelta(days=1)),
        "staff_noperm": make_user(is_staff=True),
        "staff": make_user(is_staff=True, is_superuser=True),
    }
    users["expired"] = users["user"]
    closed = Guild.objects.create(name="Closed")  # invitation-only: its leader invites, nobody else
    Guild.objects.filter(pk=closed.pk).update(leader=make_user(guild=closed))
    ctx = {"guild_id": str(guild.pk), "closed_guild_id": str(closed.pk), "invitee_id": str(make_user().pk), "made": []}
    roles, rows = table(HTTP)
    failures = []
    for route, expected_by_role in rows.items():
        for role in roles:
            client = Client()
            headers = {}
            if role != "anonymous":
                user = users[role]
                lifetime = timedelta(seconds=-1) if role == "expired" else None
                headers = {"Authorization": f"Bearer {access_token(user, lifetime=lifetime)}"}
                if role not in ("expired",):
                    client.force_login(user)  # the admin uses a session; JWT routes ignore it here
            got = http_call(route, ctx, client, headers)
            if got != expected_by_role[role]:
                failures.append(f"{route} as {role}: expected {expected_by_role[role]}, got {got}")
    assert not failures, "\n".join(failures)
    assert Permission.objects.filter(codename="change_connection").exists()
