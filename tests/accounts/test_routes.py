"""Account routes (docs/protocol.md §8): register, token, refresh, me, guilds and parties, and live
membership moves of open connections."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.throttling import ScopedRateThrottle
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import Guild, Party, User
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import PASSWORD, access_token, make_user, refresh_token

pytestmark = pytest.mark.django_db(transaction=True)


def post(client: Client, path: str, body=None, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(path, body or {}, content_type="application/json", **headers)


def get(client: Client, path: str, token: str | None = None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(path, **headers)


# --- register, token, refresh, me ---------------------------------------------------------


def test_register_then_token_then_me():
    client = Client()
    created = post(client, "/api/v1/auth/register/", {"username": "alice", "password": PASSWORD})
    assert created.status_code == 201
    assert set(created.json()) == {"id", "username"} and created.json()["username"] == "alice"
    uuid.UUID(created.json()["id"])
    tokens = post(client, "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}).json()
    assert set(tokens) == {"access", "refresh"}
    me = get(client, "/api/v1/auth/me/", tokens["access"])
    assert me.status_code == 200
    assert me.json() == {
        "id": created.json()["id"],
        "username": "alice",
        "is_staff": False,
        "is_moderator": False,
        "guild": None,
        "party": None,
        "invitations": [],
    }
    refreshed = post(client, "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200 and "access" in refreshed.json()
    assert AccessToken(refreshed.json()["access"])["user_id"] == created.json()["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "al", "password": PASSWORD}, "username"),
        ({"username": "bad name!", "password": PASSWORD}, "username"),
        ({"username": "x" * 33, "password": PASSWORD}, "username"),
        ({"username": "carol", "password": "short"}, "password"),
        ({"username": "carol", "password": "password123"}, "password"),  # common
        ({"username": "carol", "password": "1234567890123"}, "password"),  # all digits
        ({"username": "carolcarol", "password": "carolcarol1"}, "password"),  # like the username
        ({"password": PASSWORD}, "username"),
        ({"username": "carol"}, "password"),
    ],
)
def test_register_refuses_bad_names_and_weak_passwords(body, field):
    response = post(Client(), "/api/v1/auth/register/", body)
    assert response.status_code == 400
    assert field in response.json()


def test_register_refuses_a_taken_name_case_insensitively():
    make_user("Dana")
    response = post(Client(), "/api/v1/auth/register/", {"username": "dana", "password": PASSWORD})
    assert response.status_code == 409


def test_refreshing_a_token_of_a_deleted_or_deactivated_user_is_401():
    gone, idle = make_user("gone"), make_user("idle")
    gone_refresh, idle_refresh = refresh_token(gone), refresh_token(idle)
    gone.delete()
    User.objects.filter(pk=idle.pk).update(is_active=False)
    client = Client()
    for refresh in (gone_refresh, idle_refresh):
        response = post(client, "/api/v1/auth/token/refresh/", {"refresh": refresh})
        assert response.status_code == 401, response.content
        # The same answer for both: which accounts were deleted is nobody's business.
        assert response.json() == {"detail": "No active account found for the given token."}


def test_token_refuses_bad_credentials_and_inactive_users():
    make_user("erin")
    make_user("frank", is_active=False)
    client = Client()
    assert post(client, "/api/v1/auth/token/", {"username": "erin", "password": "wrong"}).status_code == 401
    assert post(client, "/api/v1/auth/token/", {"username": "frank", "password": PASSWORD}).status_code == 401
    assert post(client, "/api/v1/auth/token/refresh/", {"refresh": "garbage"}).status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/", "/api/v1/auth/register/"])
def test_json_nested_past_the_recursion_limit_is_a_400_not_a_500(path):
    body = '{"username": ' + "[" * 5000 + "]" * 5000 + ', "password": "x"}'
    response = Client().post(path, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


def test_me_needs_a_token():
    client = Client()
    assert get(client, "/api/v1/auth/me/").status_code == 401
    assert get(client, "/api/v1/auth/me/", "garbage").status_code == 401


def test_token_route_is_throttled_per_address(monkeypatch):

    # DRF binds the rates when the class is defined; patch them where they are read.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth_token": "3/min"})

    cache.clear()
    client = Client()
    codes = [post(client, "/api/v1/auth/token/", {"username": "x", "password": "y"}).status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
    cache.clear()


# --- guilds and parties ------------------------------------------------------------------


def test_guild_create_join_leave():
    alice, bob = make_user("galice"), make_user("gbob")
    client = Client()
    created = post(client, "/api/v1/guilds/", {"name": "Knights", "open": True}, access_token(alice))
    assert created.status_code == 201 and created.json() == {
        "id": created.json()["id"],
        "name": "Knights",
        "open": True,
    }
    guild_id = created.json()["id"]
    assert User.objects.get(pk=alice.pk).guild_id == uuid.UUID(guild_id)
    assert post(client, "/api/v1/guilds/", {"name": "knights"}, access_token(bob)).status_code == 409
    joined = post(client, f"/api/v1/guilds/{guild_id}/join/", None, access_token(bob))
    assert joined.status_code == 200 and joined.json()["id"] == guild_id
    assert get(client, "/api/v1/auth/me/", access_token(bob)).json()["guild"] == {"id": guild_id, "name": "Knights"}
    assert post(client, "/api/v1/guilds/leave/", None, access_token(bob)).status_code == 200
    assert User.objects.get(pk=bob.pk).guild_id is None
    assert post(client, "/api/v1/guilds/leave/", None, access_token(bob)).status_code == 409
    assert post(client, f"/api/v1/guilds/{uuid.uuid4()}/join/", None, access_token(bob)).status_code == 404
    assert post(client, "/api/v1/guilds/not-a-uuid/join/", None, access_token(bob)).status_code == 404
    assert post(client, "/api/v1/guilds/", {"name": ""}, access_token(bob)).status_code == 400
    assert post(client, "/api/v1/guilds/", {"name": "Anon"}).status_code == 401


def test_party_size_limit_leader_handover_and_end():
    leader, *others = [make_user(f"party{i}") for i in range(6)]
    client = Client()
    party_id = post(client, "/api/v1/parties/", {"name": "Heroes", "open": True}, access_token(leader)).json()["id"]
    for member in others[:4]:
        assert post(client, f"/api/v1/parties/{party_id}/join/", None, access_token(member)).status_code == 200
    full = post(client, f"/api/v1/parties/{party_id}/join/", None, access_token(others[4]))
    assert full.status_code == 409 and "full" in full.json()["detail"]
    assert post(client, "/api/v1/parties/leave/", None, access_token(leader)).status_code == 200
    assert Party.objects.get(pk=party_id).leader_id == others[0].pk  # the longest-standing member
    for member in others[:4]:
        assert post(client, "/api/v1/parties/leave/", None, access_token(member)).status_code == 200
    assert not Party.objects.filter(pk=party_id).exists()  # a party ends with its last member


def test_party_without_a_name_gets_one():
    user = make_user("namer")
    created = post(Client(), "/api/v1/parties/", None, access_token(user))
    assert created.status_code == 201 and created.json()["name"] == "namer's party"


# --- membership changes move open connections at once ------------------------------------


async def test_guild_join_moves_open_chat_connections_into_the_guild_audience():
    alice = await db(make_user)("malice")
    bob = await db(make_user)("mbob")
    guild = await db(Guild.objects.create)(name="Movers", open=True)
    await db(User.objects.filter(pk=alice.pk).update)(guild=guild)
    alice_chat = await connect("/ws/chat", await db(access_token)(alice))
    bob_chat = await connect("/ws/chat", await db(access_token)(bob))
    # Bob is not in the guild yet: he may not speak in it.
    refused = await bob_chat.request({"type": "chat_message", "channel": "guild", "content": "hi"})
    assert refused["code"] == "forbidden"
    client = Client()
    joined = await db(post)(client, f"/api/v1/guilds/{guild.pk}/join/", None, await db(access_token)(bob))
    assert joined.status_code == 200
    # Without reconnecting, Bob now speaks and is heard in the guild.
    for _ in range(20):
        said = await bob_chat.request({"type": "chat_message", "channel": "guild", "content": "joined!"})
        if said["type"] != "error":
            break
    heard = await alice_chat.recv_type("chat_message")
    assert heard["content"] == "joined!" and heard["channel"] == "guild"
    left = await db(post)(client, "/api/v1/guilds/leave/", None, await db(access_token)(bob))
    assert left.status_code == 200
    for _ in range(20):
        refused = await bob_chat.request({"type": "chat_message", "channel": "guild", "content": "still here?"})
        if refused["type"] == "error":
            break
    assert refused["code"] == "forbidden"
    await alice_chat.close()
    await bob_chat.close()


async def test_the_other_members_hear_who_joins_and_leaves():
    alice, bob, carol = await db(make_user)("nalice"), await db(make_user)("nbob"), await db(make_user)("ncarol")
    first = await db(Guild.objects.create)(name="First", open=True)
    second = await db(Guild.objects.create)(name="Second", open=True)
    await db(User.objects.filter(pk=alice.pk).update)(guild=first)
    await db(User.objects.filter(pk=carol.pk).update)(guild=second)
    alice_game = await connect("/ws/game", await db(access_token)(alice))
    carol_game = await connect("/ws/game", await db(access_token)(carol))
    bob_game = await connect("/ws/game", await db(access_token)(bob))
    client, bob_token = Client(), await db(access_token)(bob)
    assert (await db(post)(client, f"/api/v1/guilds/{first.pk}/join/", None, bob_token)).status_code == 200
    joined = await alice_game.recv_type("membership_changed")
    assert {k: joined[k] for k in ("scope", "scope_id", "user_id", "username", "change")} == {
        "scope": "guild",
        "scope_id": str(first.pk),
        "user_id": str(bob.pk),
        "username": "nbob",
        "change": "joined",
    }
    # Moving on: the old guild hears `left`, the new one `joined`; Bob himself hears neither.
    assert (await db(post)(client, f"/api/v1/guilds/{second.pk}/join/", None, bob_token)).status_code == 200
    assert (await alice_game.recv_type("membership_changed"))["change"] == "left"
    moved_in = await carol_game.recv_type("membership_changed")
    assert (moved_in["change"], moved_in["scope_id"]) == ("joined", str(second.pk))
    while not await bob_game.nothing(0.3):
        assert (await bob_game.recv())["type"] != "membership_changed"
    for client_ in (alice_game, carol_game, bob_game):
        await client_.close()
