"""Admin for zones: every change reaches the running instances' zone caches at once."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from realtime.features.world import zones
from realtime.models import Zone


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ("name", "title", "min_x", "min_y", "max_x", "max_y", "spawn_x", "spawn_y", "updated_at")
    search_fields = ("name", "title")
    fieldsets = (
        (None, {"fields": ("name", "title")}),
        ("Bounds (edges included)", {"fields": (("min_x", "max_x"), ("min_y", "max_y"))}),
        ("Spawn point", {"fields": (("spawn_x", "spawn_y"),)}),
    )

    def save_model(self, request: Any, obj: Zone, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        zones.zones_changed_on_commit()

    def delete_model(self, request: Any, obj: Zone) -> None:
        super().delete_model(request, obj)
        zones.zones_changed_on_commit()

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        super().delete_queryset(request, queryset)
        zones.zones_changed_on_commit()
