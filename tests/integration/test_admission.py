"""Invitation-only groups and the admin login lockout across two real daphne instances and Redis
(docs/protocol.md §8): the `invitation` event crosses instances, live or kept, and admin login
failures on either instance count towards one lockout."""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.cluster import ServerProcess, WsClient
from tests.support.faults import until
from tests.support.users import PASSWORD, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def call(server: ServerProcess, method: str, path: str, token: str, body=None):
    return await asyncio.to_thread(server.request, method, path, body, token)


async def test_an_invitation_reaches_the_player_on_another_instance_who_then_joins(cluster, unique):
    a, b = cluster[0], cluster[1]
    leader_id, leader = await asyncio.to_thread(a.register, unique("lead"))
    guest_name = unique("guest")
    guest_id, guest = await asyncio.to_thread(b.register, guest_name)
    _, stranger = await asyncio.to_thread(b.register, unique("stranger"))
    status, guild = await call(a, "POST", "/api/v1/guilds/", leader, {"name": unique("Hall")})
    assert status == 201 and guild["open"] is False
    guest_game = await WsClient.open(f"{b.ws}/ws/game", guest)
    guest_chat = await WsClient.open(f"{b.ws}/ws/chat", guest)
    leader_chat = await WsClient.open(f"{a.ws}/ws/chat", leader)

    status, _ = await call(b, "POST", f"/api/v1/guilds/{guild['id']}/join/", stranger)
    assert status == 403
    status, _ = await call(a, "POST", f"/api/v1/guilds/{guild['id']}/invitations/", guest, {"user_id": leader_id})
    assert status == 403  # only the leader invites
    status, invitation = await call(
        a, "POST", f"/api/v1/guilds/{guild['id']}/invitations/", leader, {"username": guest_name}
    )
    assert status == 201, invitation
    event = await guest_game.recv_type("invitation", timeout=10)
    assert (event["kind"], event["group_id"], event["name"]) == ("guild", guild["id"], guild["name"])
    assert event["from"]["id"] == leader_id and event["expires_at"] == invitation["expires_at"]

    status, joined = await call(b, "POST", f"/api/v1/guilds/{guild['id']}/join/", guest)
    assert status == 200 and joined["id"] == guild["id"]

    # Now a member: the guild's chat, sent on the other instance, reaches the guest's connection
    # once each instance has moved its connection's groups (the HTTP routes only tell them to).
    async def heard_welcome() -> dict | None:
        said = await leader_chat.request({"type": "chat_message", "channel": "guild", "content": "welcome"})
        if said["type"] != "ack":
            return None
        with contextlib.suppress(TimeoutError):
            return await guest_chat.recv_type("chat_message", timeout=1, channel="guild")
        return None

    heard = (await until(heard_welcome, timeout=15, what="guild chat after the join"))[0]
    assert heard["content"] == "welcome" and heard["user_id"] == leader_id
    # The invitation was used up.
    status, me = await call(b, "GET", "/api/v1/auth/me/", guest)
    assert status == 200 and me["invitations"] == [] and me["guild"]["id"] == guild["id"]
    assert guest_id == me["id"]
    for client in (guest_game, guest_chat, leader_chat):
        await client.close()


async def test_an_invitation_to_an_offline_player_is_kept_and_delivered_on_another_instance(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, leader = await asyncio.to_thread(a.register, unique("lead"))
    guest_id, guest = await asyncio.to_thread(a.register, unique("guest"))
    status, party = await call(a, "POST", "/api/v1/parties/", leader, {"name": "Night Watch"})
    assert status == 201
    status, _ = await call(a, "POST", f"/api/v1/parties/{party['id']}/invitations/", leader, {"user_id": guest_id})
    assert status == 201
    game = await WsClient.open(f"{b.ws}/ws/game", guest)
    kept = await game.recv_type("invitation", timeout=10)
    assert kept["group_id"] == party["id"] and kept["kind"] == "party" and kept["name"] == "Night Watch"
    status, _ = await call(b, "POST", f"/api/v1/parties/{party['id']}/join/", guest)
    assert status == 200
    await game.close()


# --- the admin login, on both instances -----------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def admin_login(server: ServerProcess, username: str, password: str) -> int:
    """One login through the admin's form, CSRF token and all: 302 logged in, 200 refused, 429 locked."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)
    with opener.open(f"{server.http}/admin/login/", timeout=10) as page:
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    assert csrf is not None
    body = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf.group(1), "next": "/admin/"}
    ).encode()
    try:
        with opener.open(f"{server.http}/admin/login/?next=/admin/", body, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_admin_login_failures_on_either_instance_count_towards_one_lockout(cluster, unique):
    a, b = cluster[0], cluster[1]
    name = unique("warden")
    await asyncio.to_thread(make_user, name, is_staff=True)
    assert await asyncio.to_thread(admin_login, a, name, PASSWORD) == 302
    codes = []
    for index in range(10):
        server = a if index % 2 else b
        codes.append(await asyncio.to_thread(admin_login, server, name, "wrong-password"))
    assert codes[:9] == [200] * 9 and codes[9] == 429
    for server in (a, b):
        assert await asyncio.to_thread(admin_login, server, name, PASSWORD) == 429
    # The token route of the same name is unaffected: its own throttle, 401 or tokens.
    status, tokens = await asyncio.to_thread(
        a.request, "POST", "/api/v1/auth/token/", {"username": name, "password": PASSWORD}
    )
    assert status == 200 and set(tokens) == {"access", "refresh"}
