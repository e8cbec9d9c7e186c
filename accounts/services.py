"""Account actions: registration, and guild/party membership that moves open connections live.

Guilds and parties are invitation-only unless created open (docs/protocol.md §8): their leader
invites, the invited player joins and the invitation is used up. Each group has a leader while it
has members; when the leader leaves, the longest-standing member takes over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import GUILD, INVITATION_LIFETIME, PARTY, Guild, Invitation, Party
from realtime import groups
from realtime.features.offline import pending_withdraw, send_personal
from realtime.outbound import broadcast_on_commit, build_event, send_control_on_commit
from realtime.protocol import now_iso

logger = logging.getLogger(__name__)

User = get_user_model()

PARTY_MAX_SIZE = getattr(settings, "PARTY_MAX_SIZE", 5)

Group = Guild | Party
GROUP_MODELS: dict[str, type[Guild] | type[Party]] = {GUILD: Guild, PARTY: Party}


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


# --- creating, joining, leaving ------------------------------------------------------------------


@transaction.atomic
def guild_create(*, user: Any, name: str, open: bool = False) -> Guild:
    """A new guild led by `user`, who joins it (leaving any other guild)."""
    if Guild.objects.filter(name__iexact=name).exists():
        raise MembershipError("A guild with that name exists.", status=409)
    try:
        with transaction.atomic():  # a savepoint: a concurrent create of the same name loses cleanly
            guild = Guild.objects.create(name=name, open=open, created_by=user, leader=user)
    except IntegrityError as exc:
        raise MembershipError("A guild with that name exists.", status=409) from exc
    _guild_set(user, guild)
    return guild


@transaction.atomic
def guild_join(*, user: Any, guild_id: Any) -> Guild:
    """Join an open guild, or one that invited `user` (the invitation is used up)."""
    guild = Guild.objects.select_for_update().filter(pk=guild_id).first()
    if guild is None:
        raise MembershipError("No such guild.", status=404)
    if _current_group_id(user, GUILD) == guild.pk:
        return guild
    _admission_use(user, guild)
    _guild_set(user, guild)
    return guild


@transaction.atomic
def guild_leave(*, user: Any) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.guild_id is None:
        raise MembershipError("You are not in a guild.", status=409)
    _guild_set(user, None)


def _guild_set(user: Any, guild: Guild | None) -> None:
    previous_id = _current_group_id(user, GUILD)
    User.objects.filter(pk=user.pk).update(guild=guild)
    user.guild = guild
    _announce_membership(user, GUILD, guild.pk if guild else None, previous_id)
    _group_left(GUILD, previous_id, user)
    if guild is not None:
        _leader_ensure(GUILD, guild.pk)


@transaction.atomic
def party_create(*, user: Any, name: str, open: bool = False) -> Party:
    """A new party led by `user`, who joins it (leaving any other party)."""
    party = Party.objects.create(name=name, open=open, leader=user)
    _party_set(user, party)
    return party


@transaction.atomic
def party_join(*, user: Any, party_id: Any) -> Party:
    """Join an open party, or one that invited `user`, unless it is full."""
    party = Party.objects.select_for_update().filter(pk=party_id).first()
    if party is None:
        raise MembershipError("No such party.", status=404)
    if _current_group_id(user, PARTY) == party.pk:
        return party
    # Admission before size: a stranger learns nothing about an invitation-only party.
    invitation = _admission(user, party)
    if User.objects.filter(party=party).exclude(pk=user.pk).count() >= PARTY_MAX_SIZE:
        raise MembershipError(f"The party is full ({PARTY_MAX_SIZE} members).", status=409)
    _invitation_remove(invitation)
    _party_set(user, party)
    return party


@transaction.atomic
def party_leave(*, user: Any) -> None:
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.party_id is None:
        raise MembershipError("You are not in a party.", status=409)
    _party_set(user, None)


def _party_set(user: Any, party: Party | None) -> None:
    previous_id = _current_group_id(user, PARTY)
    User.objects.filter(pk=user.pk).update(party=party)
    user.party = party
    _announce_membership(user, PARTY, party.pk if party else None, previous_id)
    _group_left(PARTY, previous_id, user)
    if party is not None:
        _leader_ensure(PARTY, party.pk)


def _current_group_id(user: Any, kind: str) -> Any:
    return User.objects.filter(pk=user.pk).values_list(f"{kind}_id", flat=True).first()


def _group_left(kind: str, previous_id: Any, user: Any) -> None:
    """After `user` left a group: a party ends with its last member; otherwise the leader role
    passes on if it was theirs."""
    if not previous_id or previous_id == getattr(user, f"{kind}_id"):
        return
    if kind == PARTY and not User.objects.filter(party_id=previous_id).exists():
        _group_invitations_withdraw(kind, previous_id)
        Party.objects.filter(pk=previous_id).delete()
        return
    _leader_ensure(kind, previous_id)


def _leader_ensure(kind: str, group_id: Any) -> Any:
    """The group's leader id; when the leader is no longer a member (left, moved by staff, account
    deleted), the longest-standing member takes over, and a group without members has none."""
    model = GROUP_MODELS[kind]
    leader_id = model.objects.filter(pk=group_id).values_list("leader_id", flat=True).first()
    members = User.objects.filter(**{f"{kind}_id": group_id})
    if leader_id is not None and members.filter(pk=leader_id).exists():
        return leader_id
    successor = members.order_by("date_joined").values_list("pk", flat=True).first()
    if successor != leader_id:
        model.objects.filter(pk=group_id).update(leader=successor)
    return successor


# --- invitations ---------------------------------------------------------------------------------


def invitation_ref(kind: str, group_id: Any) -> str:
    """What a kept `invitation` event is about, so it can be withdrawn (docs/protocol.md §9)."""
    return f"invitation:{kind}:{group_id}"


@transaction.atomic
def invitation_create(
    *, inviter: Any, kind: str, group_id: Any, invitee_id: Any = None, username: str = ""
) -> Invitation:
    """The leader of a guild or party invites a player (by id or by name). Inviting again renews
    the invitation. The player gets an `invitation` event once this commits, kept if offline."""
    model = GROUP_MODELS[kind]
    group = model.objects.select_for_update().filter(pk=group_id).first()
    if group is None:
        raise MembershipError(f"No such {kind}.", status=404)
    if _leader_ensure(kind, group.pk) != inviter.pk:
        raise MembershipError(f"Only the {kind}'s leader may invite.", status=403)
    # Deactivated accounts are as unknown as deleted ones: no way to probe which exist.
    candidates = User.objects.filter(is_active=True)
    invitee = (
        candidates.filter(pk=invitee_id).first() if invitee_id else candidates.filter(username__iexact=username).first()
    )
    if invitee is None:
        raise MembershipError("No such user.", status=404)
    if invitee.pk == inviter.pk:
        raise MembershipError("You cannot invite yourself.", status=400)
    if getattr(invitee, f"{kind}_id") == group.pk:
        raise MembershipError(f"{invitee.username} is already in this {kind}.", status=409)
    now = timezone.now()
    Invitation.objects.filter(expires_at__lte=now).delete()  # lapsed ones, of any group (indexed)
    invitation, _ = Invitation.objects.update_or_create(
        **{kind: group},
        invitee=invitee,
        defaults={"invited_by": inviter, "created_at": now, "expires_at": now + INVITATION_LIFETIME},
    )
    ref = invitation_ref(kind, group.pk)
    pending_withdraw(user_id=str(invitee.pk), ref=ref)  # an earlier one kept for later: this replaces it
    event = build_event(
        "invitation",
        kind=kind,
        group_id=str(group.pk),
        name=group.name,
        **{"from": {"id": str(inviter.pk), "username": inviter.username}},
        expires_at=now_iso(invitation.expires_at),
    )
    transaction.on_commit(lambda: _invitation_send(str(invitee.pk), event, ref))
    return invitation


def _invitation_send(user_id: str, event: dict[str, Any], ref: str) -> None:
    try:
        async_to_sync(send_personal)(user_id, event, store_if_offline=True, ref=ref)
    except Exception:
        # The invitation stands (it is in the player's `me` and roster); only the nudge is lost.
        logger.warning("invitation event to user %s not sent", user_id, exc_info=True)


def invitations_pending(*, user: Any) -> list[Invitation]:
    """The invitations `user` may still use, newest first."""
    return list(
        Invitation.objects.filter(invitee=user.pk, expires_at__gt=timezone.now())
        .select_related("guild", "party", "invited_by", "invitee")
        .order_by("-created_at")
    )


def _admission(user: Any, group: Group) -> Invitation | None:
    """`user`'s valid invitation to `group` (None for an open group without one); 403 otherwise."""
    invitation = Invitation.objects.filter(
        **{group.kind: group}, invitee=user.pk, expires_at__gt=timezone.now()
    ).first()
    if invitation is None and not group.open:
        raise MembershipError(f"This {group.kind} is invitation-only: ask its leader for an invitation.", status=403)
    return invitation


def _admission_use(user: Any, group: Group) -> None:
    _invitation_remove(_admission(user, group))


def _invitation_remove(invitation: Invitation | None) -> None:
    if invitation is None:
        return
    pending_withdraw(user_id=str(invitation.invitee_id), ref=invitation_ref(invitation.kind, invitation.group.pk))
    invitation.delete()


@transaction.atomic
def invitation_withdraw(*, invitation: Invitation) -> None:
    """Staff withdraw an invitation: it can no longer be used, nor its kept event delivered."""
    _invitation_remove(invitation)


def _group_invitations_withdraw(kind: str, group_id: Any) -> None:
    """A group going away takes its invitations along, kept `invitation` events included."""
    ref = invitation_ref(kind, group_id)
    invited = Invitation.objects.filter(**{f"{kind}_id": group_id}).values_list("invitee_id", flat=True)
    for user_id in invited:
        pending_withdraw(user_id=str(user_id), ref=ref)
    Invitation.objects.filter(**{f"{kind}_id": group_id}).delete()


# --- staff edits (the admin) ---------------------------------------------------------------------


def membership_edited(user: Any, *, changed: Iterable[str], previous_guild_id: Any, previous_party_id: Any) -> None:
    """Staff saved `user` with another guild or party: the same effects as the routes."""
    for kind, previous_id in ((GUILD, previous_guild_id), (PARTY, previous_party_id)):
        if kind not in changed:
            continue
        current_id = getattr(user, f"{kind}_id")
        _announce_membership(user, kind, current_id, previous_id)
        _group_left(kind, previous_id, user)
        if current_id is not None:
            _leader_ensure(kind, current_id)


@transaction.atomic
def group_delete(group: Group) -> None:
    """Delete a guild or party; its members' open connections leave its groups, and its
    invitations (kept `invitation` events included) are withdrawn."""
    members = list(group.members.only("pk"))
    _group_invitations_withdraw(group.kind, group.pk)
    group.delete()  # the members' guild or party becomes NULL (SET_NULL)
    for member in members:
        _announce_membership(member, group.kind, None)
