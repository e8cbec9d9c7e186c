"""Admin for chat: messages (search, filter, moderated delete), the moderation log (read-only), and
the ban / mute / kick actions the player admin offers. Every action goes through the moderation
service, so it is recorded and reaches open connections on every instance like a socket action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from realtime.admin.readonly import ReadOnlyAdminMixin
from realtime.features.moderation import moderation_apply_sync
from realtime.models import ChatMessage, ModerationAction
from realtime.protocol import ProtocolError

DURATIONS = [
    ("600", "10 minutes"),
    ("3600", "1 hour"),
    ("86400", "1 day"),
    ("604800", "7 days"),
    ("2592000", "30 days"),
    ("", "Permanent"),
]


class ModerationForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False, help_text="Shown to the player and in global chat.")


class TimedModerationForm(ModerationForm):
    duration = forms.ChoiceField(choices=DURATIONS, required=False, initial="3600")


def _moderate(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str,
    target: Callable[[Any], dict[str, Any]],
    timed: bool = False,
) -> TemplateResponse | None:
    """Ask for a reason (and duration), then apply `action` to each selected row."""
    form_class = TimedModerationForm if timed else ModerationForm
    form = form_class(request.POST if "apply" in request.POST else None)
    if not form.is_bound or not form.is_valid():
        return TemplateResponse(
            request,
            "admin/realtime/moderation_confirmation.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": title,
                "opts": modeladmin.model._meta,
                "queryset": queryset,
                "form": form,
                "action": request.POST.get("action"),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )
    duration = form.cleaned_data.get("duration")
    done, refused = 0, []
    for row in queryset:
        try:
            moderation_apply_sync(
                moderator_id=request.user.pk,
                action=action,
                duration_seconds=float(duration) if duration else None,
                reason=form.cleaned_data["reason"],
                via=ModerationAction.Via.ADMIN,
                **target(row),
            )
            done += 1
        except ProtocolError as exc:
            refused.append(f"{row}: {exc.message}")
    if done:
        modeladmin.message_user(request, f"{title}: done for {done}.", messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, line, messages.WARNING)
    return None


def _user_action(action: str, title: str, *, timed: bool = False) -> Callable:
    def run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return _moderate(
            modeladmin, request, queryset, action=action, title=title, timed=timed, target=lambda u: {"user_id": u.pk}
        )

    run.__name__ = f"moderation_{action}"
    return admin.action(description=f"{title} (chat moderation)")(run)


def user_moderation_actions() -> list[Callable]:
    """The player admin's moderation actions (see accounts/admin.py)."""
    return [
        _user_action("mute", "Mute", timed=True),
        _user_action("unmute", "Unmute"),
        _user_action("kick", "Kick"),
        _user_action("ban", "Ban", timed=True),
        _user_action("unban", "Unban"),
    ]


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("no", "Visible"), ("yes", "Deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "no":
            return queryset.filter(deleted_at=None)
        if self.value() == "yes":
            return queryset.exclude(deleted_at=None)
        return queryset


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: messages change only through moderation; old ones go with `prune_chat_history`."""

    list_display = ("created_at", "channel", "sender_name", "recipient", "content", "is_visible")
    list_filter = ("channel", DeletedFilter, "created_at")
    search_fields = ("content", "sender_name", "=message_id")
    date_hierarchy = "created_at"
    list_select_related = ("recipient",)
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    actions = ["delete_messages"]

    @admin.display(boolean=True, description="visible")
    def is_visible(self, message: ChatMessage) -> bool:
        return message.deleted_at is None

    @admin.action(description="Delete selected messages (players see them disappear)")
    def delete_messages(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        return _moderate(
            self,
            request,
            queryset,
            action="delete_message",
            title="Delete messages",
            target=lambda m: {"message_id": m.message_id},
        )


@admin.register(ModerationAction)
class ModerationActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The moderation log: written by the service only, never edited."""

    list_display = ("created_at", "action", "moderator_name", "target_name", "until_display", "reason", "via")
    list_filter = ("action", "via", "created_at")
    search_fields = ("moderator_name", "target_name", "reason", "=message_id")
    date_hierarchy = "created_at"

    @admin.display(description="until")
    def until_display(self, record: ModerationAction) -> str:
        if record.permanent:
            return "permanent"
        return str(record.until) if record.until else "—"
