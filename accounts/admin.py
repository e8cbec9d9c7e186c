"""Admin for players, guilds and parties."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import Guild, Party, User
from realtime.admin.chat import user_moderation_actions


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


@admin.register(Guild)
class GuildAdmin(admin.ModelAdmin):
    list_display = ("name", "created_by", "created_at")
    search_fields = ("name",)


@admin.register(Party)
class PartyAdmin(admin.ModelAdmin):
    list_display = ("name", "leader", "created_at")
    search_fields = ("name",)
