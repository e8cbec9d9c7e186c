"""Admin for players, guilds and parties."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import services
from accounts.models import Guild, Party, User
from realtime.admin.chat import user_moderation_actions


class MembersLeaveOnDelete:
    """Deleting goes through the service, so the members' open connections leave its groups."""

    def delete_model(self, request, obj):
        services.group_delete(obj)

    def delete_queryset(self, request, queryset):
        for group in queryset:
            services.group_delete(group)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "is_staff", "is_moderator", "guild", "party", "banned_until", "muted_until")
    list_filter = ("is_staff", "is_moderator", "is_active")
    search_fields = ("username", "email")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Game", {"fields": ("is_moderator", "guild", "party", "banned_until", "muted_until")}),
    )
    # Sanctions change only through the moderation actions: they are logged and reach open connections.
    readonly_fields = ("banned_until", "muted_until")
    actions = user_moderation_actions()

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and {"guild", "party"} & set(form.changed_data):
            # Like the membership routes: open connections move groups at once, on every instance.
            services.membership_edited(
                obj,
                changed=form.changed_data,
                previous_guild_id=form.initial.get("guild"),
                previous_party_id=form.initial.get("party"),
            )


@admin.register(Guild)
class GuildAdmin(MembersLeaveOnDelete, admin.ModelAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)


@admin.register(Party)
class PartyAdmin(MembersLeaveOnDelete, admin.ModelAdmin):
    list_display = ("name", "leader", "created_at")
    search_fields = ("name",)
