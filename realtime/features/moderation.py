"""Moderation (docs/protocol.md §5): mute, unmute, ban, unban, kick and delete_message, from the socket
or the admin, each recorded in `ModerationAction` and made effective on every instance at once.

Rules (the same for every caller):
- only active staff or moderators may act (read fresh from the database, not from a session);
- nobody moderates themselves; staff accounts cannot be moderated here (demote them first);
  only staff may moderate other moderators; any message may be deleted;
- a mute or ban without `duration_seconds` is permanent; timed ones end on their own, because
  every check is `until > now` (connection state, the middleware, re-validation).

Publishing after the database work, in this order, per target user:
`moderation_state` control (open connections update their mute state without a query), a
personal `moderation_notice`, then for ban/kick a `close` control (4403) on every endpoint and
instance; finally one `moderation_event` to global chat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from realtime import groups
from realtime.connection import Connection
from realtime.features import offline
from realtime.features.chat import public_until
from realtime.models import ChatMessage, ModerationAction
from realtime.models.chat import PERMANENT
from realtime.outbound import broadcast_to_stream, build_event, send_control
from realtime.protocol import CloseCode, ErrorCode, ProtocolError, iso_or_none, streams
from realtime.runtime import Runtime

logger = logging.getLogger(__name__)

Action = ModerationAction.Action
USER_STATE_ACTIONS = frozenset({Action.MUTE, Action.UNMUTE, Action.BAN, Action.UNBAN})
CLOSING_ACTIONS = {Action.BAN: ErrorCode.BANNED, Action.KICK: ErrorCode.KICKED}


@dataclass(frozen=True, slots=True)
class ModerationOutcome:
    """What was done, for the publishing step and the reply to the moderator."""

    record_id: int
    action: str
    moderator_name: str
    user_id: str | None
    message_id: str | None
    reason: str | None
    until: datetime | None  # the stored end (PERMANENT for permanent), None where n/a
    muted_until: datetime | None = None  # the target's state after the action
    banned_until: datetime | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of `moderation_event` / `moderation_notice` / the moderator's ack."""
        return {
            "action": self.action,
            "user_id": self.user_id,
            "message_id": self.message_id,
            "moderator": self.moderator_name,
            "reason": self.reason,
            "until": public_until(self.until),
        }


def _forbidden(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, message)


def _check_may_moderate(moderator: Any, target: Any) -> None:
    if target.pk == moderator.pk:
        raise _forbidden("You cannot moderate yourself.")
    if target.is_staff or target.is_superuser:
        raise _forbidden("Staff accounts cannot be moderated.")
    if target.is_moderator and not moderator.is_staff:
        raise _forbidden("Only staff can moderate moderators.")


def moderation_record(
    *,
    moderator_id: Any,
    action: str,
    user_id: Any = None,
    message_id: Any = None,
    duration_seconds: float | None = None,
    reason: str | None = None,
    via: str = ModerationAction.Via.SOCKET,
) -> ModerationOutcome:
    """The database part of a moderation action, in one transaction; raises ProtocolError."""
    User = get_user_model()
    action = Action(action)
    reason = (reason or "").strip() or None
    now = timezone.now()
    with transaction.atomic():
        moderator = User.objects.filter(pk=moderator_id, is_active=True).first()
        if moderator is None or not moderator.can_moderate:
            raise _forbidden("Only moderators and staff can moderate.")
        until: datetime | None = None
        if action == Action.DELETE_MESSAGE:
            visible = ChatMessage.objects.filter(message_id=message_id, deleted_at=None)
            author = visible.values_list("sender_id", "sender_name", "recipient_id").first()
            # The conditional UPDATE makes a concurrent second delete a `not_found`, not a second event.
            if author is None or not visible.update(deleted_at=now):
                raise ProtocolError(ErrorCode.NOT_FOUND, "No such message.", message_id=str(message_id))
            target_id, target_name, recipient_id = author
            if recipient_id is not None:  # a private message still waiting for an offline recipient
                offline.pending_withdraw(user_id=recipient_id, ref=offline.chat_message_ref(message_id))
            outcome_message_id = str(message_id)
            target_state: dict[str, Any] = {}
        else:
            target = User.objects.select_for_update().filter(pk=user_id).first()
            if target is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, "No such user.", user_id=str(user_id))
            _check_may_moderate(moderator, target)
            if action in (Action.MUTE, Action.BAN):
                until = now + timedelta(seconds=duration_seconds) if duration_seconds else PERMANENT
            if action == Action.MUTE:
                target.muted_until = until
            elif action == Action.UNMUTE:
                target.muted_until = None
            elif action == Action.BAN:
                target.banned_until = until
            elif action == Action.UNBAN:
                target.banned_until = None
            if action in USER_STATE_ACTIONS:
                target.save(update_fields=["muted_until", "banned_until"])
            target_id, target_name = target.pk, target.username
            outcome_message_id = None
            target_state = {"muted_until": target.muted_until, "banned_until": target.banned_until}
        record = ModerationAction.objects.create(
            action=action,
            moderator=moderator,
            moderator_name=moderator.username,
            target_id=target_id,
            target_name=target_name,
            message_id=outcome_message_id,
            reason=reason or "",
            until=None if until is None or until >= PERMANENT else until,
            via=via,
            created_at=now,
        )
    logger.info(
        "moderation %s by %s on %s (%s)", action, moderator.username, target_name, outcome_message_id or target_id
    )
    return ModerationOutcome(
        record_id=record.pk,
        action=str(action),
        moderator_name=moderator.username,
        user_id=str(target_id) if target_id else None,
        message_id=outcome_message_id,
        reason=reason,
        until=until,
        **target_state,
    )


async def moderation_publish(outcome: ModerationOutcome) -> None:
    """Make a recorded action effective everywhere (see the module docstring for the order)."""
    action = Action(outcome.action)
    fields = outcome.event_fields()
    target = groups.user(outcome.user_id) if outcome.user_id else None
    if target and action in USER_STATE_ACTIONS:
        await send_control(
            target,
            "moderation_state",
            muted_until=iso_or_none(outcome.muted_until),
            banned_until=iso_or_none(outcome.banned_until),
        )
    if outcome.user_id:
        # Kept for later only when it still means something once the user is back.
        await offline.send_personal(
            outcome.user_id, build_event("moderation_notice", **fields), store_if_offline=action != Action.KICK
        )
    if target and action in CLOSING_ACTIONS:
        await send_control(
            target,
            "close",
            code=int(CloseCode.FORBIDDEN),
            error_code=str(CLOSING_ACTIONS[action]),
            message=_close_message(outcome),
        )
    await broadcast_to_stream(streams.chat_global(), groups.chat_global(), build_event("moderation_event", **fields))


def _close_message(outcome: ModerationOutcome) -> str:
    if outcome.action == Action.KICK:
        text = "You were kicked by a moderator."
    elif public_until(outcome.until) is None:
        text = "You are banned."
    else:
        text = f"You are banned until {public_until(outcome.until)}."
    return f"{text} Reason: {outcome.reason}" if outcome.reason else text


async def moderation_apply(**options: Any) -> ModerationOutcome:
    """Record and publish a moderation action (async callers: the chat consumer).

    Takes the keyword arguments of `moderation_record`; raises its ProtocolErrors.
    """
    outcome = await database_sync_to_async(moderation_record)(**options)
    await moderation_publish(outcome)
    return outcome


def moderation_apply_sync(**options: Any) -> ModerationOutcome:
    """Record and publish from sync code (admin actions); publishes once the transaction commits.

    Takes the keyword arguments of `moderation_record`; raises its ProtocolErrors.
    """
    outcome = moderation_record(**options)
    transaction.on_commit(lambda: async_to_sync(moderation_publish)(outcome))
    return outcome


# --- the receiving side, on every instance ---------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def moderation_state_control(conn: Connection, message: dict[str, Any]) -> None:
    """Apply a user's new mute/ban state to one local connection (no database read)."""
    user = conn.user
    if user is None:
        return
    user.muted_until = _parse_time(message.get("muted_until"))
    user.banned_until = _parse_time(message.get("banned_until"))


def install(runtime: Runtime) -> None:
    runtime.on_control("moderation_state", moderation_state_control)
