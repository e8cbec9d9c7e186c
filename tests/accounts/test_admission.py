"""Invitation-only guilds and parties (docs/protocol.md §8): leaders, invitations and the
`invitation` event, joining, expiry and withdrawal, per-user throttling of the membership routes,
and the rule for group names."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.throttling import ScopedRateThrottle

from accounts import services
from accounts.models import Guild, Invitation, Party, User
from realtime.models import PendingDelivery
from realtime.protocol import endpoints_for
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ("guild", "party")
PREFIX = {"guild": "guilds", "party": "parties"}


def post(path: str, body=None, user=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {access_token(user)}"} if user is not None else {}
    return Client().post(path, body or {}, content_type="application/json", **headers)


def create(kind: str, leader, name: str, *, open_: bool = False) -> str:
    response = post(f"/api/v1/{PREFIX[kind]}/", {"name": name, "open": open_}, leader)
    assert response.status_code == 201, response.content
    assert response.json()["open"] is open_
    return response.json()["id"]


def invite(kind: str, group_id: str, inviter, body):
    return post(f"/api/v1/{PREFIX[kind]}/{group_id}/invitations/", body, inviter)


def join(kind: str, group_id: str, user):
    return post(f"/api/v1/{PREFIX[kind]}/{group_id}/join/", None, user)


def group_of(kind: str, user) -> uuid.UUID | None:
    return User.objects.values_list(f"{kind}_id", flat=True).get(pk=user.pk)


def leader_of(kind: str, group_id) -> uuid.UUID | None:
    model = Guild if kind == "guild" else Party
    return model.objects.values_list("leader_id", flat=True).get(pk=group_id)


# --- creating and joining ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_groups_are_invitation_only_by_default_and_the_creator_leads(kind):
    leader, stranger = make_user(), make_user()
    group_id = create(kind, leader, "Closed Circle")
    assert leader_of(kind, group_id) == leader.pk
    assert group_of(kind, leader) == uuid.UUID(group_id)
    refused = join(kind, group_id, stranger)
    assert refused.status_code == 403
    assert "invitation-only" in refused.json()["detail"]
    assert group_of(kind, stranger) is None


@pytest.mark.parametrize("kind", KINDS)
def test_open_groups_let_anyone_join(kind):
    leader, passer_by = make_user(), make_user()
    group_id = create(kind, leader, "Open Door", open_=True)
    joined = join(kind, group_id, passer_by)
    assert joined.status_code == 200 and joined.json()["id"] == group_id
    assert group_of(kind, passer_by) == uuid.UUID(group_id)
    assert leader_of(kind, group_id) == leader.pk  # joining does not change who leads


@pytest.mark.parametrize("kind", KINDS)
def test_an_invited_player_joins_once_and_the_invitation_is_used_up(kind):
    leader, guest = make_user(), make_user("guest")
    group_id = create(kind, leader, "Inner Circle")
    invited = invite(kind, group_id, leader, {"user_id": str(guest.pk)})
    assert invited.status_code == 201
    body = invited.json()
    assert body["kind"] == kind and body["group_id"] == group_id and body["name"] == "Inner Circle"
    assert body["from"] == {"id": str(leader.pk), "username": leader.username}
    assert body["user"] == {"id": str(guest.pk), "username": "guest"}
    assert join(kind, group_id, guest).status_code == 200
    assert group_of(kind, guest) == uuid.UUID(group_id)
    assert not Invitation.objects.exists()
    # Used up: having left, the guest needs a new invitation to come back.
    assert post(f"/api/v1/{PREFIX[kind]}/leave/", None, guest).status_code == 200
    assert join(kind, group_id, guest).status_code == 403


@pytest.mark.parametrize("kind", KINDS)
def test_players_can_be_invited_by_name_whatever_its_case(kind):
    leader, guest = make_user(), make_user("Wanderer")
    group_id = create(kind, leader, "Named")
    assert invite(kind, group_id, leader, {"username": "wanderer"}).status_code == 201
    assert join(kind, group_id, guest).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_invitation_refusals(kind):
    leader, member, guest = make_user(), make_user(), make_user()
    group_id = create(kind, leader, "Refusals", open_=True)
    assert join(kind, group_id, member).status_code == 200
    inactive = make_user(is_active=False)
    cases = [
        # Only the leader invites: a member, a stranger and an anonymous caller cannot.
        (member, group_id, {"user_id": str(guest.pk)}, 403),
        (guest, group_id, {"user_id": str(member.pk)}, 403),
        (None, group_id, {"user_id": str(guest.pk)}, 401),
        # Unknown users, deactivated ones alike (no way to tell them apart), and unknown groups.
        (leader, group_id, {"user_id": str(uuid.uuid4())}, 404),
        (leader, group_id, {"user_id": str(inactive.pk)}, 404),
        (leader, group_id, {"username": "nobody-here"}, 404),
        (leader, str(uuid.uuid4()), {"user_id": str(guest.pk)}, 404),
        # Yourself, or someone already in.
        (leader, group_id, {"user_id": str(leader.pk)}, 400),
        (leader, group_id, {"user_id": str(member.pk)}, 409),
        # Malformed bodies.
        (leader, group_id, {}, 400),
        (leader, group_id, {"user_id": str(guest.pk), "username": guest.username}, 400),
        (leader, group_id, {"user_id": "not-a-uuid"}, 400),
    ]
    for inviter, target, body, status in cases:
        response = invite(kind, target, inviter, body)
        assert response.status_code == status, (inviter and inviter.username, body, response.content)
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_inviting_again_renews_the_invitation(kind):
    leader, guest = make_user(), make_user()
    group_id = create(kind, leader, "Renewals")
    assert invite(kind, group_id, leader, {"user_id": str(guest.pk)}).status_code == 201
    Invitation.objects.update(expires_at=timezone.now() + timedelta(hours=1))
    assert invite(kind, group_id, leader, {"user_id": str(guest.pk)}).status_code == 201
    invitation = Invitation.objects.get()
    assert invitation.expires_at > timezone.now() + timedelta(days=6)


@pytest.mark.parametrize("kind", KINDS)
def test_an_expired_invitation_admits_nobody(kind):
    leader, guest = make_user(), make_user()
    group_id = create(kind, leader, "Lapsed")
    created = invite(kind, group_id, leader, {"user_id": str(guest.pk)}).json()
    assert created["expires_at"] > (timezone.now() + timedelta(days=6, hours=23)).isoformat()
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert join(kind, group_id, guest).status_code == 403
    me = Client().get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {access_token(guest)}").json()
    assert me["invitations"] == []


def test_an_invitation_to_a_full_party_admits_once_there_is_room():
    leader = make_user()
    party_id = create("party", leader, "Crowd", open_=True)
    others = [make_user() for _ in range(services.PARTY_MAX_SIZE - 1)]
    for member in others:
        assert join("party", party_id, member).status_code == 200
    Party.objects.filter(pk=party_id).update(open=False)
    guest = make_user()
    assert invite("party", party_id, leader, {"user_id": str(guest.pk)}).status_code == 201
    full = join("party", party_id, guest)
    assert full.status_code == 409 and "full" in full.json()["detail"]
    assert Invitation.objects.filter(invitee=guest).exists()  # not used up by the refusal
    assert post("/api/v1/parties/leave/", None, others[0]).status_code == 200
    assert join("party", party_id, guest).status_code == 200


def test_a_stranger_learns_nothing_about_a_full_invitation_only_party():
    leader = make_user()
    party_id = create("party", leader, "Secret", open_=True)
    for _ in range(services.PARTY_MAX_SIZE - 1):
        assert join("party", party_id, make_user()).status_code == 200
    Party.objects.filter(pk=party_id).update(open=False)
    assert join("party", party_id, make_user()).status_code == 403  # not 409


@pytest.mark.parametrize("kind", KINDS)
def test_joining_your_own_group_again_changes_nothing(kind):
    leader = make_user()
    group_id = create(kind, leader, "Home")
    assert join(kind, group_id, leader).status_code == 200
    assert group_of(kind, leader) == uuid.UUID(group_id)


# --- leaders ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_longest_standing_member_leads_when_the_leader_leaves_and_can_invite(kind):
    leader, first, second = make_user(), make_user(), make_user()
    group_id = create(kind, leader, "Succession", open_=True)
    for member in (first, second):
        assert join(kind, group_id, member).status_code == 200
    assert post(f"/api/v1/{PREFIX[kind]}/leave/", None, leader).status_code == 200
    assert leader_of(kind, group_id) == first.pk
    guest = make_user()
    assert invite(kind, group_id, leader, {"user_id": str(guest.pk)}).status_code == 403  # no longer leads
    assert invite(kind, group_id, first, {"user_id": str(guest.pk)}).status_code == 201


def test_an_empty_guild_stays_and_its_next_member_leads_it():
    founder, newcomer = make_user(), make_user()
    guild_id = create("guild", founder, "Phoenix", open_=True)
    assert post("/api/v1/guilds/leave/", None, founder).status_code == 200
    assert Guild.objects.filter(pk=guild_id).exists()  # a guild outlives its members, unlike a party
    assert leader_of("guild", guild_id) is None
    assert join("guild", guild_id, newcomer).status_code == 200
    assert leader_of("guild", guild_id) == newcomer.pk


@pytest.mark.parametrize("kind", KINDS)
def test_a_group_whose_leader_account_is_gone_gets_a_new_leader_before_inviting(kind):
    leader, member, guest = make_user(), make_user(), make_user()
    group_id = create(kind, leader, "Orphans", open_=True)
    assert join(kind, group_id, member).status_code == 200
    leader.delete()  # the leader column becomes NULL
    assert invite(kind, group_id, member, {"user_id": str(guest.pk)}).status_code == 201
    assert leader_of(kind, group_id) == member.pk


def test_staff_moving_the_guild_leader_away_passes_the_lead_on():
    leader, member = make_user(), make_user()
    guild_id = create("guild", leader, "Moved", open_=True)
    assert join("guild", guild_id, member).status_code == 200
    elsewhere = Guild.objects.create(name="Elsewhere")
    User.objects.filter(pk=leader.pk).update(guild=elsewhere)
    leader.refresh_from_db()
    services.membership_edited(leader, changed=["guild"], previous_guild_id=uuid.UUID(guild_id), previous_party_id=None)
    assert leader_of("guild", guild_id) == member.pk
    assert leader_of("guild", elsewhere.pk) == leader.pk  # the leaderless guild he landed in


# --- the invitation event --------------------------------------------------------------------------


def test_the_invitation_event_is_carried_by_the_game_endpoint():
    assert endpoints_for("invitation") == frozenset({"game"})


@pytest.mark.parametrize("kind", KINDS)
async def test_an_online_player_gets_the_invitation_event_at_once(kind):
    leader = await db(make_user)("inviter")
    guest = await db(make_user)()
    group_id = await db(create)(kind, leader, "Live Invite")
    game = await connect("/ws/game", await db(access_token)(guest))
    response = await db(invite)(kind, group_id, leader, {"user_id": str(guest.pk)})
    assert response.status_code == 201
    event = await game.recv_type("invitation")
    assert {k: event[k] for k in ("kind", "group_id", "name", "from")} == {
        "kind": kind,
        "group_id": group_id,
        "name": "Live Invite",
        "from": {"id": str(leader.pk), "username": "inviter"},
    }
    assert event["timestamp"].endswith("Z") and event["expires_at"] == response.json()["expires_at"]
    assert not await db(PendingDelivery.objects.exists)()
    await game.close()


async def test_an_offline_player_gets_the_invitation_on_the_next_game_connection():
    leader, guest = await db(make_user)(), await db(make_user)()
    leader_game = await connect("/ws/game", await db(access_token)(leader))  # the server is running
    guild_id = await db(create)("guild", leader, "Later")
    assert (await db(invite)("guild", guild_id, leader, {"user_id": str(guest.pk)})).status_code == 201
    assert await db(PendingDelivery.objects.filter(user=guest, event_type="invitation").count)() == 1
    chat = await connect("/ws/chat", await db(access_token)(guest))  # chat does not carry it
    assert await chat.nothing(0.3)
    game = await connect("/ws/game", await db(access_token)(guest))
    kept = await game.recv_type("invitation")
    assert kept["group_id"] == guild_id and kept["name"] == "Later"
    for client in (leader_game, chat, game):
        await client.close()


async def test_inviting_again_keeps_one_event_for_an_offline_player():
    leader, guest = await db(make_user)(), await db(make_user)()
    leader_game = await connect("/ws/game", await db(access_token)(leader))
    guild_id = await db(create)("guild", leader, "Twice")
    for _ in range(2):
        assert (await db(invite)("guild", guild_id, leader, {"user_id": str(guest.pk)})).status_code == 201
    assert await db(kept_for)(guest) == 1
    await leader_game.close()


# Personal events are kept by the server process (a shell or command hands them to it through
# the outbox): with a connection open, this process serves, as the HTTP routes do under daphne.


def kept_for(user) -> int:
    return PendingDelivery.objects.filter(user=user, delivered_at=None).count()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_deleted_group_takes_its_invitations_and_their_kept_events_along(kind):
    leader, guest = await db(make_user)(), await db(make_user)()
    leader_game = await connect("/ws/game", await db(access_token)(leader))
    group_id = await db(create)(kind, leader, "Doomed")
    assert (await db(invite)(kind, group_id, leader, {"user_id": str(guest.pk)})).status_code == 201
    assert await db(kept_for)(guest) == 1
    model = Guild if kind == "guild" else Party
    await db(lambda: services.group_delete(model.objects.get(pk=group_id)))()
    assert not await db(Invitation.objects.exists)()
    assert await db(kept_for)(guest) == 0
    await leader_game.close()


async def test_a_party_that_ends_takes_its_invitations_along():
    leader, guest = await db(make_user)(), await db(make_user)()
    leader_game = await connect("/ws/game", await db(access_token)(leader))
    party_id = await db(create)("party", leader, "Brief")
    assert (await db(invite)("party", party_id, leader, {"user_id": str(guest.pk)})).status_code == 201
    assert (await db(post)("/api/v1/parties/leave/", None, leader)).status_code == 200  # the last member
    assert not await db(Party.objects.filter(pk=party_id).exists)()
    assert not await db(Invitation.objects.exists)()
    assert await db(kept_for)(guest) == 0
    assert (await db(join)("party", party_id, guest)).status_code == 404
    await leader_game.close()


async def test_joining_withdraws_the_kept_event_of_the_invitation_it_used():
    leader, guest = await db(make_user)(), await db(make_user)()
    leader_game = await connect("/ws/game", await db(access_token)(leader))
    guild_id = await db(create)("guild", leader, "Quick")
    assert (await db(invite)("guild", guild_id, leader, {"user_id": str(guest.pk)})).status_code == 201
    assert await db(kept_for)(guest) == 1
    assert (await db(join)("guild", guild_id, guest)).status_code == 200
    assert await db(kept_for)(guest) == 0
    await leader_game.close()


def test_me_lists_pending_invitations_newest_first():
    guild_leader, party_leader, guest = make_user("gl"), make_user("pl"), make_user()
    guild_id = create("guild", guild_leader, "Guild One")
    party_id = create("party", party_leader, "Party One")
    assert invite("guild", guild_id, guild_leader, {"user_id": str(guest.pk)}).status_code == 201
    assert invite("party", party_id, party_leader, {"user_id": str(guest.pk)}).status_code == 201
    me = Client().get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {access_token(guest)}").json()
    assert [(i["kind"], i["group_id"], i["name"], i["from"]["username"]) for i in me["invitations"]] == [
        ("party", party_id, "Party One", "pl"),
        ("guild", guild_id, "Guild One", "gl"),
    ]
    # The inviter sees none of them as their own.
    leader_me = Client().get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {access_token(guild_leader)}").json()
    assert leader_me["invitations"] == []


# --- throttling ------------------------------------------------------------------------------------


def test_membership_routes_are_throttled_per_user(monkeypatch):
    # DRF binds the rates when the class is defined; patch them where they are read.
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"membership": "3/min"})
    busy, other = make_user(), make_user()
    codes = [post("/api/v1/parties/", {"name": f"p{n}"}, busy).status_code for n in range(3)]
    assert codes == [201, 201, 201]
    # Every membership route counts, and over the limit each one answers 429.
    assert post("/api/v1/parties/leave/", None, busy).status_code == 429
    assert post("/api/v1/guilds/", {"name": "Too Many"}, busy).status_code == 429
    assert post(f"/api/v1/guilds/{uuid.uuid4()}/invitations/", {"username": "x"}, busy).status_code == 429
    # Per user, not per address: another player from the same address is not held back.
    assert post("/api/v1/guilds/", {"name": "Someone Else"}, other).status_code == 201
    # Reading your own state is not a membership route.
    assert Client().get("/api/v1/auth/me/", HTTP_AUTHORIZATION=f"Bearer {access_token(busy)}").status_code == 200


# --- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "name",
    [
        "\u200b\u200b\u200b",  # zero-width spaces only
        "\u200d\u2060\ufeff",  # joiner, word joiner, BOM
        "\u3164\u3164",  # Hangul fillers: letters that show nothing
        "\u2800\u2800",  # blank Braille
        "\u202e\u202e\u200b",  # overrides are removed, nothing visible is left
        " \u00a0\u3000 ",  # spaces of all kinds
        "a\u202e",  # one character once the override is gone: too short
        "tab\there",  # control characters
        "new\nline",
    ],
)
def test_names_refuse_what_shows_nothing_and_control_characters(kind, name):
    response = post(f"/api/v1/{PREFIX[kind]}/", {"name": name}, make_user())
    assert response.status_code == 400, response.content
    assert "name" in response.json()


@pytest.mark.parametrize("kind", KINDS)
def test_names_lose_their_bidirectional_overrides_and_keep_the_rest(kind):
    leader = make_user()
    spoof = "\u202agood\u202b \u202cguild\u202d\u202e \u2066x\u2067y\u2068z\u2069"
    response = post(f"/api/v1/{PREFIX[kind]}/", {"name": spoof}, leader)
    assert response.status_code == 201
    assert response.json()["name"] == "good guild xyz"
    # Right-to-left scripts, emoji joined with zero-width joiners and accents are all fine.
    for fine in ("\u0645\u0631\u062d\u0628\u0627", "\U0001f468\u200d\U0001f469\u200d\U0001f467 kin", "Caf\u00e9"):
        created = post(f"/api/v1/{PREFIX[kind]}/", {"name": fine}, make_user())
        assert created.status_code == 201 and created.json()["name"] == fine


def test_a_guild_name_with_overrides_stripped_collides_with_the_plain_one():
    create("guild", make_user(), "Knights")
    response = post("/api/v1/guilds/", {"name": "\u202eKnights"}, make_user())
    assert response.status_code == 409
