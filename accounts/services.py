"""Account actions: registration, and guild/party membership that moves open connections live."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction

from accounts.models import Guild, Party
from realtime import groups
from realtime.outbound import broadcast_on_commit, build_event, send_control_on_commit

User = get_user_model()

PARTY_MAX_SIZE = getattr(settings, "PARTY_MAX_SIZE", 5)


class MembershipError(Exception):
    """A membership request that cannot be done; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def user_register(*, username: str, password: str) -> Any:
    """Create a player; password rules are Django's validators (raise ValidationError)."""
    candidate = User(username=username)
    validate_password(password, user=candidate)
    candidate.set_password(password)
    candidate.save()
    return candidate


def _announce_membership(user: Any, scope: str, scope_id: Any, previous_id: Any = None) -> None:
    # Every open connection of the user, on every instance, moves groups once this commits.
    send_control_on_commit(
        groups.user(user.pk), "membership", scope=scope, scope_id=str(scope_id) if scope_id else None
    )
    # The other members hear of it on their game connections, so their rosters stay current.
    if previous_id == scope_id:
        return
    for group_id, change in ((previous_id, "left"), (scope_id, "joined")):
        if group_id:
            event = build_event(
                "membership_changed",
                scope=scope,
                scope_id=str(group_id),
                user_id=str(user.pk),
                username=user.username,
                change=change,
            )
            broadcast_on_commit(groups.membership("game", scope, group_id), event, exclude_user=str(user.pk))


@transaction.atomic
def guild_create(*, user: Any, name: str) -> Guild:
    if Guild.objects.filter(name__iexact=name).exists():
        raise MembershipError("A guild with that name exists.", status=409)
    try:
        with transaction.atomic():  # a savepoint: a concurrent create of the same name loses cleanly
            guild = Guild.objects.create(name=name, created_by=user)
    except IntegrityError as exc:
        raise MembershipError("A guild with that name exists.", status=409) from exc
    _guild_set(user, guild)
    return guild


@transaction.atomic
def guild_join(*, user: Any, guild_id: Any) -> Guild:
    guild = Guild.objects.filter(pk=guild_id).first()
    if guild is None:
        raise MembershipError("No such guild.", status=404)
    _guild_set(user, guild)
    return guild


@transaction.atomic
def guild_leave(*, user: Any) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.guild_id is None:
        raise MembershipError("You are not in a guild.", status=409)
    _guild_set(user, None)


def _guild_set(user: Any, guild: Guild | None) -> None:
    previous_id = User.objects.filter(pk=user.pk).values_list("guild_id", flat=True).first()
    User.objects.filter(pk=user.pk).update(guild=guild)
    user.guild = guild
    _announce_membership(user, "guild", guild.pk if guild else None, previous_id)


@transaction.atomic
def party_create(*, user: Any, name: str) -> Party:
    party = Party.objects.create(name=name, leader=user)
    _party_set(user, party)
    return party


@transaction.atomic
def party_join(*, user: Any, party_id: Any) -> Party:
    party = Party.objects.select_for_update().filter(pk=party_id).first()
    if party is None:
        raise MembershipError("No such party.", status=404)
    if User.objects.filter(party=party).exclude(pk=user.pk).count() >= PARTY_MAX_SIZE:
        raise MembershipError(f"The party is full ({PARTY_MAX_SIZE} members).", status=409)
    _party_set(user, party)
    return party


@transaction.atomic
def party_leave(*, user: Any) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.party_id is None:
        raise MembershipError("You are not in a party.", status=409)
    _party_set(user, None)


def _party_set(user: Any, party: Party | None) -> None:
    previous_id = User.objects.filter(pk=user.pk).values_list("party_id", flat=True).first()
    User.objects.filter(pk=user.pk).update(party=party)
    user.party = party
    _announce_membership(user, "party", party.pk if party else None, previous_id)
    _party_left(user, previous_id)


def _party_left(user: Any, previous_id: Any) -> None:
    """A party ends with its last member; the leader role passes on otherwise."""
    if not previous_id or previous_id == user.party_id:
        return
    remaining = User.objects.filter(party_id=previous_id).order_by("date_joined").first()
    if remaining is None:
        Party.objects.filter(pk=previous_id).delete()
    else:
        Party.objects.filter(pk=previous_id, leader=user.pk).update(leader=remaining)


# --- staff edits (the admin) ---------------------------------------------------------------------


def membership_edited(user: Any, *, changed: Iterable[str], previous_guild_id: Any, previous_party_id: Any) -> None:
    """Staff saved `user` with another guild or party: the same effects as the routes."""
    if "guild" in changed:
        _announce_membership(user, "guild", user.guild_id, previous_guild_id)
    if "party" in changed:
        _announce_membership(user, "party", user.party_id, previous_party_id)
        _party_left(user, previous_party_id)


@transaction.atomic
def group_delete(group: Guild | Party) -> None:
    """Delete a guild or party; its members' open connections leave its groups."""
    scope = "guild" if isinstance(group, Guild) else "party"
    members = list(group.members.only("pk"))
    group.delete()  # the members' guild or party becomes NULL (SET_NULL)
    for member in members:
        _announce_membership(member, scope, None)
