"""The demo world: `seed_demo`, the bot players of `run_demo_bots`, and the roster snapshot."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts import services as accounts
from accounts.models import Guild, Party
from play import services
from play.management.commands.run_demo_bots import websocket_base
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import PASSWORD, access_token, make_user
from tests.support.world import create_default_zones

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


@pytest.fixture(autouse=True)
def development_server(settings):
    """What `scripts/serve` runs with (pytest-django turns DEBUG off by default)."""
    settings.DEBUG = True


def seed(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- seed_demo ---------------------------------------------------------------------------------


def test_seed_demo_creates_players_guild_and_party():
    out, _ = seed()
    players = {u.username: u for u in User.objects.select_related("guild", "party")}
    assert set(players) == set(services.DEMO_USERNAMES)
    for user in players.values():
        assert user.check_password(services.DEMO_PASSWORD)
        assert user.guild.name == services.DEMO_GUILD
    party = Party.objects.get()
    assert (party.name, party.leader.username) == (services.DEMO_PARTY, "alice")
    assert {u.username for u in party.members.all()} == {"alice", "bob"}
    assert players["carol"].party is None
    assert "alice, bob, carol, dave" in out and services.DEMO_PASSWORD in out


def test_seed_demo_twice_changes_nothing():
    seed()
    before = (
        list(User.objects.order_by("username").values_list("username", "guild_id", "party_id", "password")),
        Guild.objects.count(),
        Party.objects.count(),
    )
    out, _ = seed()
    after = (
        list(User.objects.order_by("username").values_list("username", "guild_id", "party_id", "password")),
        Guild.objects.count(),
        Party.objects.count(),
    )
    assert after == before
    assert "already there" in out


def test_seed_demo_leaves_existing_players_as_they_are():
    bob_guild = Guild.objects.create(name="Bob's own")
    make_user("Alice")  # any capitalisation counts as the demo name
    make_user("bob", guild=bob_guild)
    seed()
    alice = User.objects.get(username="Alice")
    assert alice.check_password(PASSWORD) and not alice.check_password(services.DEMO_PASSWORD)
    assert alice.guild.name == services.DEMO_GUILD  # she had none, so she joined
    assert User.objects.get(username="bob").guild_id == bob_guild.pk
    assert not User.objects.filter(username="alice").exclude(pk=alice.pk).exists()


def test_seed_demo_keeps_founder_elsewhere_and_still_makes_the_guild():
    elsewhere = Guild.objects.create(name="Elsewhere")
    make_user("alice", guild=elsewhere)
    seed()
    assert User.objects.get(username="alice").guild_id == elsewhere.pk
    demo = Guild.objects.get(name=services.DEMO_GUILD)
    assert {u.username for u in demo.members.all()} == {"bob", "carol", "dave"}


def test_seed_demo_does_nothing_with_debug_off(settings):
    settings.DEBUG = False
    out, err = seed()
    assert not User.objects.exists()
    assert "skipped" in err and "--force" in err
    assert out == ""


def test_seed_demo_force_works_with_debug_off(settings):
    settings.DEBUG = False
    seed("--force")
    assert User.objects.filter(username__in=services.DEMO_USERNAMES).count() == len(services.DEMO_USERNAMES)


# --- bot players -------------------------------------------------------------------------------


def test_bot_players_have_no_usable_password_and_join_the_demo_guild():
    seed()
    bots = services.demo_bots_ensure(count=3)
    assert [b.username for b in bots] == ["rowan_bot", "sage_bot", "thorn_bot"]
    for bot in User.objects.filter(username__endswith="_bot"):
        assert not bot.has_usable_password()
        assert bot.guild.name == services.DEMO_GUILD
    again = services.demo_bots_ensure(count=3)
    assert [b.pk for b in again] == [b.pk for b in bots]
    assert User.objects.filter(username__endswith="_bot").count() == 3


def test_bot_names_stay_unique_past_the_name_list():
    names = [services.bot_username(i) for i in range(services.MAX_BOTS)]
    assert len(set(names)) == services.MAX_BOTS
    assert names[len(services.BOT_NAMES)] == "rowan2_bot"


def test_bots_without_a_demo_guild_stay_guildless():
    (bot,) = services.demo_bots_ensure(count=1)
    assert bot.guild_id is None


def test_bots_stay_out_of_a_demo_guild_staff_made_invitation_only():
    seed()
    Guild.objects.filter(name=services.DEMO_GUILD).update(open=False)
    (bot,) = services.demo_bots_ensure(count=1)
    assert bot.guild_id is None


@pytest.mark.parametrize("count", [0, -1, services.MAX_BOTS + 1])
def test_bot_count_out_of_range_is_refused(count):
    with pytest.raises(ValueError):
        services.demo_bots_ensure(count=count)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000"),
        ("https://game.example.com/", "wss://game.example.com"),
        ("ws://localhost:8080/play/", "ws://localhost:8080"),
        ("wss://h:1", "wss://h:1"),
    ],
)
def test_websocket_base(url, expected):
    assert websocket_base(url) == expected


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8000", "http://"])
def test_websocket_base_refuses_other_urls(url):
    with pytest.raises(CommandError):
        websocket_base(url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count"),
        (["--zone", "atlantis"], "No zone"),
        (["--url", "gopher://x"], "--url"),
        (["--duration", "-1"], "--duration"),
    ],
)
def test_run_demo_bots_refuses_bad_arguments(args, message):
    create_default_zones()
    with pytest.raises(CommandError, match=message):
        call_command("run_demo_bots", *args)
    assert not User.objects.filter(username__endswith="_bot").exists()


def test_run_demo_bots_needs_debug_or_force(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--force"):
        call_command("run_demo_bots", "--count", "1")
    assert not User.objects.exists()


# --- roster ------------------------------------------------------------------------------------


async def test_roster_shows_presence_of_guild_and_party_members():
    await db(seed)()
    alice, bob, carol = [await db(User.objects.get)(username=name) for name in ("alice", "bob", "carol")]
    bob_chat = await connect("/ws/chat", access_token(bob))
    carol_game = await connect("/ws/game", access_token(carol))
    await carol_game.request({"type": "set_status", "status": "busy"})

    roster = await db(services.roster_for)(user_id=alice.pk)

    guild = {m["username"]: m["status"] for m in roster["guild"]["members"]}
    assert guild == {"alice": "offline", "bob": "online", "carol": "busy", "dave": "offline"}
    party = roster["party"]
    assert party["name"] == services.DEMO_PARTY and party["leader"] == str(alice.pk)
    assert {m["username"]: m["status"] for m in party["members"]} == {"alice": "offline", "bob": "online"}
    assert [g["name"] for g in roster["guilds"]] == [services.DEMO_GUILD]
    assert roster["guilds"][0]["members"] == 4
    assert roster["parties"] == [{"id": party["id"], "name": services.DEMO_PARTY, "members": 2}]
    await bob_chat.close()
    await carol_game.close()


def test_roster_without_groups_lists_only_open_groups_to_join():
    full = Party.objects.create(name="Full", open=True)
    for _ in range(5):
        make_user(party=full)
    open_party = Party.objects.create(name="Open", open=True)
    make_user(party=open_party)
    Party.objects.create(name="Empty", open=True)
    closed_party = Party.objects.create(name="Closed")
    make_user(party=closed_party)
    Guild.objects.create(name="Open Guild", open=True)
    make_user(guild=Guild.objects.create(name="Closed Guild"))
    loner = make_user()
    roster = services.roster_for(user_id=loner.pk)
    assert roster["guild"] is None and roster["party"] is None
    # Not the full one, not the empty one, and no invitation-only one: knowing it exists takes an invitation.
    assert [p["name"] for p in roster["parties"]] == ["Open"]
    assert [g["name"] for g in roster["guilds"]] == ["Open Guild"]
    assert roster["invitations"] == []


def test_roster_lists_the_invitations_addressed_to_the_caller():
    leader, guest, bystander = make_user("lead"), make_user(), make_user()
    guild = accounts.guild_create(user=leader, name="Hidden Hall")
    accounts.invitation_create(inviter=leader, kind="guild", group_id=guild.pk, invitee_id=guest.pk)
    roster = services.roster_for(user_id=guest.pk)
    assert roster["guilds"] == []  # invitation-only: not listed to join ...
    (invitation,) = roster["invitations"]  # ... but the invitation names it
    assert {k: invitation[k] for k in ("kind", "group_id", "name", "from")} == {
        "kind": "guild",
        "group_id": str(guild.pk),
        "name": "Hidden Hall",
        "from": {"id": str(leader.pk), "username": "lead"},
    }
    assert services.roster_for(user_id=bystander.pk)["invitations"] == []
    # The leader's own roster shows the guild with its leader and that it is invitation-only.
    own = services.roster_for(user_id=leader.pk)["guild"]
    assert (own["name"], own["open"], own["leader"]) == ("Hidden Hall", False, str(leader.pk))


def test_the_demo_groups_are_open_so_anyone_can_join_them():
    seed()
    newcomer = make_user()
    guild = Guild.objects.get(name=services.DEMO_GUILD)
    party = Party.objects.get(name=services.DEMO_PARTY)
    assert guild.open and party.open
    accounts.guild_join(user=newcomer, guild_id=guild.pk)
    accounts.party_join(user=newcomer, party_id=party.pk)
    assert Guild.objects.get(members=newcomer) == guild and Party.objects.get(members=newcomer) == party


def test_seed_demo_opens_demo_groups_made_before_invitations():
    guild = Guild.objects.create(name=services.DEMO_GUILD)  # invitation-only, as the migration left it
    seed()
    guild.refresh_from_db()
    assert guild.open
    assert set(guild.members.values_list("username", flat=True)) == set(services.DEMO_USERNAMES)
    assert Guild.objects.get(pk=guild.pk).leader is not None


def test_seed_demo_leaves_a_player_out_of_an_invitation_only_party_of_the_leader():
    theirs = Party.objects.create(name="Alice's own")
    make_user("alice", party=theirs)
    out, _ = seed()
    assert User.objects.get(username="bob").party_id is None
    assert "Not added to the demo guild or party: bob" in out and "invitation-only" in out
