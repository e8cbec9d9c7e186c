"""Admin for combat: sessions with their participants and full log, and players' combat stats."""

from __future__ import annotations

from django.contrib import admin

from realtime.models import CombatLogEntry, CombatParticipant, CombatSession, PlayerCombatStats


class CombatParticipantInline(admin.TabularInline):
    model = CombatParticipant
    fields = ("user", "active", "connected", "joined_at", "left_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class CombatLogInline(admin.TabularInline):
    model = CombatLogEntry
    fields = ("turn", "round", "kind", "actor", "action", "target", "damage", "target_hp", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("id",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CombatSession)
class CombatSessionAdmin(admin.ModelAdmin):
    """Read-only: a fight changes only through its rules, or the log would not replay."""

    list_display = ("id", "status", "round", "turn", "actor", "deadline", "created_by", "created_at", "ended_at")
    list_filter = ("status",)
    search_fields = ("id", "participants__user__username")
    date_hierarchy = "created_at"
    inlines = (CombatParticipantInline, CombatLogInline)
    readonly_fields = (
        "id",
        "status",
        "seed",
        "round",
        "turn",
        "actor",
        "deadline",
        "idle_timeouts",
        "created_by",
        "created_at",
        "ended_at",
        "initial_state",
        "state",
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PlayerCombatStats)
class PlayerCombatStatsAdmin(admin.ModelAdmin):
    list_display = ("user", "max_hp", "attack", "defence", "speed")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
