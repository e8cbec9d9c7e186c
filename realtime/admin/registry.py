"""Admin for the connection registry, instances, offline deliveries and a live dashboard.

Everything an action does goes through the outbound path (`events.send_control`), so it
reaches the connection on whichever instance holds it, whichever instance serves the admin.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from realtime.admin.readonly import ReadOnlyAdminMixin
from realtime.boot import cleanup_runtime
from realtime.features import game, monitoring, operations
from realtime.models import Connection, Instance, PendingDelivery
from realtime.protocol.game import ANNOUNCEMENT_LEVELS


def can_operate(request: HttpRequest) -> bool:
    """Disconnecting and announcing: superusers, or staff given 'change live connection'."""
    return request.user.is_active and request.user.has_perm("realtime.change_connection")


class InstanceIdFilter(admin.SimpleListFilter):
    title = "instance"
    parameter_name = "instance"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = set(Instance.objects.values_list("id", flat=True))
        ids |= set(Connection.objects.values_list("instance_id", flat=True).distinct())
        return [(instance_id, instance_id) for instance_id in sorted(ids)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(instance_id=self.value()) if self.value() else queryset


class AuthenticatedFilter(admin.SimpleListFilter):
    title = "user"
    parameter_name = "authenticated"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Logged in"), ("no", "Anonymous")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(user__isnull=False)
        if self.value() == "no":
            return queryset.filter(user__isnull=True)
        return queryset


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Live connections, as their instances last recorded them (a few seconds behind)."""

    list_display = (
        "id",
        "endpoint",
        "user_display",
        "instance_id",
        "client_addr",
        "connected_at",
        "last_seen",
        "frames_in",
        "frames_out",
    )
    list_filter = ("endpoint", InstanceIdFilter, AuthenticatedFilter)
    search_fields = ("id", "username", "client_addr", "instance_id")
    search_help_text = "Connection id, username, user id, client address or instance."
    list_select_related = ("user",)
    actions = ("disconnect", "reconnect_elsewhere")
    list_per_page = 100

    @admin.display(description="user", ordering="username")
    def user_display(self, record: Connection) -> str:
        return record.username or "(anonymous)"

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            user_id = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(Q(user_id=user_id)), may_have_duplicates

    # Records are facts reported by the instances: read-only; deleting a row would not close anything.

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request)

    @admin.action(description="Disconnect selected connections (kick: close 4403)", permissions=["operate"])
    def disconnect(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._close(request, queryset, reconnect=False)

    @admin.action(description="Ask selected connections to reconnect elsewhere (close 1001)", permissions=["operate"])
    def reconnect_elsewhere(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._close(request, queryset, reconnect=True)

    def _close(self, request: HttpRequest, queryset: QuerySet, *, reconnect: bool) -> None:
        ids = list(queryset.values_list("id", flat=True))
        try:
            reached = operations.run_bounded(operations.connections_disconnect, connection_ids=ids, reconnect=reconnect)
        except TimeoutError:
            reached = False
        if not reached:
            # Down or only slow: a slow Redis may still pass the request on and close them late.
            self.message_user(
                request,
                "The channel layer did not take the request in time: connections on the instance serving this "
                "page were closed; those on other instances close only if it gets through. Check the list again "
                "shortly.",
                messages.ERROR,
            )
            return
        self.message_user(
            request,
            f"Asked {len(ids)} connection(s) to close. Their records disappear once their instances "
            "report the closes (a few seconds); records of dead instances go with cleanup.",
            messages.SUCCESS,
        )


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Server instances and their liveness; a dashboard of the whole cluster."""

    list_display = ("id", "state", "connections_link", "last_seen", "started_at", "host", "pid")
    search_fields = ("id", "host")
    actions = ("forget_dead",)
    change_list_template = "admin/realtime/instance/change_list.html"

    @admin.display(description="state")
    def state(self, instance: Instance) -> str:
        state = monitoring.instance_state(instance)
        colour = {"live": "#2e7d32", "draining": "#ef6c00", "dead": "#c62828"}[state]
        return format_html('<strong style="color: {}">{}</strong>', colour, state)

    @admin.display(description="connections", ordering="connections")
    def connections_link(self, instance: Instance) -> str:
        url = reverse("admin:realtime_connection_changelist") + f"?instance={instance.id}"
        return format_html('<a href="{}">{}</a>', url, instance.connections)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return can_operate(request)

    @admin.action(description="Remove records of selected dead instances", permissions=["operate"])
    def forget_dead(self, request: HttpRequest, queryset: QuerySet) -> None:
        dead = [instance.id for instance in queryset if monitoring.instance_state(instance) == "dead"]
        skipped = queryset.count() - len(dead)
        if dead:
            runtime = cleanup_runtime()
            try:
                for instance_id in dead:
                    operations.run_bounded(runtime.forget_instance, timeout=30.0, instance_id=instance_id)
            except TimeoutError:
                self.message_user(request, "Redis or the database did not answer; try again.", messages.ERROR)
                return
            self.message_user(request, f"Removed the records of {len(dead)} dead instance(s).", messages.SUCCESS)
        if skipped:
            self.message_user(request, f"Left {skipped} live instance(s) alone.", messages.WARNING)

    # --- dashboard -------------------------------------------------------------------------

    def get_urls(self):
        dashboard = path(
            "dashboard/", self.admin_site.admin_view(self.dashboard_view), name="realtime_instance_dashboard"
        )
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        if request.method == "POST":
            return self._announce(request)
        snapshot = monitoring.metrics_snapshot()
        context = {
            **self.admin_site.each_context(request),
            "title": "Real-time dashboard",
            "opts": self.model._meta,
            "overview": monitoring.cluster_overview(),
            "endpoints": monitoring.ENDPOINTS,
            "snapshot": snapshot,
            "levels": ANNOUNCEMENT_LEVELS,
            "can_operate": can_operate(request),
        }
        return TemplateResponse(request, "admin/realtime/dashboard.html", context)

    def _announce(self, request: HttpRequest) -> HttpResponse:
        back = HttpResponseRedirect(reverse("admin:realtime_instance_dashboard"))
        if not can_operate(request):
            return HttpResponse(status=403)
        try:
            reached = operations.run_bounded(
                game.announcement_send,
                message=request.POST.get("message", ""),
                level=request.POST.get("level", "info"),
            )
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return back
        except TimeoutError:
            reached = False
        if reached:
            self.message_user(request, "Announcement sent to every /ws/game connection.", messages.SUCCESS)
        else:
            self.message_user(
                request, "Channel layer unavailable: the announcement reached this instance only.", messages.ERROR
            )
        return back


@admin.register(PendingDelivery)
class PendingDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "event_type", "created_at", "delivered_at")
    list_filter = ("event_type",)
