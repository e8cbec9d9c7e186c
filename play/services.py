"""Demo world and roster: the players `seed_demo` creates, the bot players, and who is online.

Membership changes go through `accounts.services`, so open connections follow them live exactly
as they do for players using the HTTP routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db.models import Count

from accounts import services as accounts
from accounts.models import Guild, Party
from accounts.serializers import invitation_summary
from realtime.features import presence

User = get_user_model()

DEMO_USERNAMES = ("alice", "bob", "carol", "dave")
# Shared by every demo player and printed in the README: only ever created on a development
# server (DEBUG) or when an operator insists (--force). Long enough for Django's validators.
DEMO_PASSWORD = "dragon-slayer-demo"
DEMO_GUILD = "Demo Guild"
DEMO_PARTY = "Demo Party"
DEMO_PARTY_MEMBERS = ("alice", "bob")  # the first one leads

BOT_NAMES = ("rowan", "sage", "thorn", "wren", "fern", "briar", "moss", "ash", "reed", "heath", "flint", "ivy")
BOT_SUFFIX = "_bot"
MAX_BOTS = len(BOT_NAMES) * 4

# How much of the guild/party lists the roster shows: enough to pick one to join in a demo.
ROSTER_MEMBERS_LIMIT = 50
ROSTER_GROUPS_LIMIT = 20


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    guild: str = ""
    party: str = ""
    not_joined: list[str] = field(default_factory=list)  # "<player>: <why>"


def demo_seed() -> SeedReport:
    """Create the demo players, guild and party. Idempotent: existing players keep their
    password, guild and party; only what is missing is added.

    The Demo Guild and Demo Party are open (docs/protocol.md §8), so anyone trying the demo can
    join them without an invitation; a demo guild or party from before invitations is opened."""
    report = SeedReport()
    players = {}
    for username in DEMO_USERNAMES:
        user = User.objects.filter(username__iexact=username).first()
        if user is None:
            user = accounts.user_register(username=username, password=DEMO_PASSWORD)
            report.created.append(username)
        else:
            report.existing.append(user.username)
        players[username] = user

    guild = _demo_guild(founder=players[DEMO_USERNAMES[0]])
    for user in players.values():
        if user.guild_id is None:
            _demo_join(report, user.username, lambda user=user: accounts.guild_join(user=user, guild_id=guild.pk))
    report.guild = guild.name

    leader, *members = (players[name] for name in DEMO_PARTY_MEMBERS)
    leader.refresh_from_db(fields=["party"])
    party = leader.party
    if party is None:
        party = accounts.party_create(user=leader, name=DEMO_PARTY, open=True)
    elif party.name == DEMO_PARTY and not party.open:
        Party.objects.filter(pk=party.pk).update(open=True)
        party.open = True
    for user in members:
        user.refresh_from_db(fields=["party"])
        if user.party_id is None:
            _demo_join(report, user.username, lambda user=user: accounts.party_join(user=user, party_id=party.pk))
    report.party = party.name
    return report


def _demo_join(report: SeedReport, username: str, join: Any) -> None:
    # The leader's own party may be another, invitation-only or full: the player stays out of it.
    try:
        join()
    except accounts.MembershipError as exc:
        report.not_joined.append(f"{username}: {exc}")


def _demo_guild(*, founder: Any) -> Guild:
    guild = Guild.objects.filter(name__iexact=DEMO_GUILD).first()
    if guild is not None:
        if not guild.open:
            Guild.objects.filter(pk=guild.pk).update(open=True)
            guild.open = True
        return guild
    if founder.guild_id is None:
        return accounts.guild_create(user=founder, name=DEMO_GUILD, open=True)
    # The founder is already elsewhere: create the guild without moving them (its first member
    # to join leads it).
    return Guild.objects.create(name=DEMO_GUILD, open=True, created_by=founder)


def bot_username(index: int) -> str:
    base = BOT_NAMES[index % len(BOT_NAMES)]
    round_ = index // len(BOT_NAMES)
    return f"{base}{round_ + 1 if round_ else ''}{BOT_SUFFIX}"


def demo_bots_ensure(*, count: int) -> list[Any]:
    """The bot players, created when missing with no usable password: the bot runner signs
    their tokens itself, so nobody can log in as a bot. They join the demo guild when it
    exists, is open and they are in none, so guild members see their presence and guild chat."""
    if not 1 <= count <= MAX_BOTS:
        raise ValueError(f"count must be between 1 and {MAX_BOTS}")
    guild = Guild.objects.filter(name__iexact=DEMO_GUILD).first()
    bots = []
    for index in range(count):
        username = bot_username(index)
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username)
            user.set_unusable_password()
            user.save()
        if guild is not None and guild.open and user.guild_id is None:
            accounts.guild_join(user=user, guild_id=guild.pk)
        bots.append(user)
    return bots


# --- roster ------------------------------------------------------------------------------------


def roster_for(*, user_id: Any) -> dict[str, Any]:
    """The player's own guild and party with each member's presence, the open guilds and parties
    they could join, and the invitations addressed to them. Invitation-only groups of others are
    never listed: knowing one exists takes an invitation (docs/protocol.md §8)."""
    user = User.objects.select_related("guild", "party").get(pk=user_id)
    guild_members = _members(User.objects.filter(guild_id=user.guild_id)) if user.guild_id else []
    party_members = _members(User.objects.filter(party_id=user.party_id)) if user.party_id else []
    statuses = members_status([m["id"] for m in guild_members + party_members])
    for member in guild_members + party_members:
        member["status"] = statuses.get(member["id"], "offline")
    guilds = Guild.objects.filter(open=True).annotate(members_count=Count("members")).order_by("-members_count", "name")
    parties = (
        Party.objects.filter(open=True)
        .annotate(members_count=Count("members"))
        .filter(members_count__gt=0, members_count__lt=accounts.PARTY_MAX_SIZE)
        .order_by("-created_at")
    )
    return {
        "guild": _group(user.guild, guild_members),
        "party": _group(user.party, party_members),
        "guilds": [{"id": str(g.pk), "name": g.name, "members": g.members_count} for g in guilds[:ROSTER_GROUPS_LIMIT]],
        "parties": [
            {"id": str(p.pk), "name": p.name, "members": p.members_count} for p in parties[:ROSTER_GROUPS_LIMIT]
        ],
        "invitations": [invitation_summary(i) for i in accounts.invitations_pending(user=user)],
    }


def _members(queryset: Any) -> list[dict[str, Any]]:
    rows = queryset.order_by("username").values_list("pk", "username")[:ROSTER_MEMBERS_LIMIT]
    return [{"id": str(pk), "username": username} for pk, username in rows]


def _group(group: Guild | Party | None, members: list[dict[str, Any]]) -> dict[str, Any] | None:
    if group is None:
        return None
    leader = str(group.leader_id) if group.leader_id else None
    return {"id": str(group.pk), "name": group.name, "open": group.open, "leader": leader, "members": members}


def members_status(user_ids: list[str]) -> dict[str, str]:
    """`online`/`away`/`busy` for users with a connection anywhere in the cluster, else `offline`.

    Called from a sync view: under the ASGI server `async_to_sync` runs this on the server's
    own event loop, where the shared state (and its Redis pool) lives.
    """
    if not user_ids:
        return {}
    return async_to_sync(_members_status)(sorted(set(user_ids)))


async def _members_status(user_ids: list[str]) -> dict[str, str]:
    statuses = {}
    for user_id in user_ids:
        reachable = await presence.user_reachable(user_id, None)
        statuses[user_id] = await presence.get_status(user_id) if reachable else "offline"
    return statuses
