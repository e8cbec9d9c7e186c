"""Admin for players, guilds, parties and invitations."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts import services
from accounts.models import Guild, Invitation, Party, User
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
    list_display = ("name", "open", "leader", "created_by", "created_at")
    list_filter = ("open",)
    search_fields = ("name",)
    raw_id_fields = ("leader", "created_by")


@admin.register(Party)
class PartyAdmin(MembersLeaveOnDelete, admin.ModelAdmin):
    list_display = ("name", "open", "leader", "created_at")
    list_filter = ("open",)
    search_fields = ("name",)
    raw_id_fields = ("leader",)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Pending invitations. Leaders invite through the API (which notifies the player); staff can
    only look and withdraw, which also withdraws the kept `invitation` event."""

    list_display = ("invitee", "kind", "group", "invited_by", "created_at", "expires_at")
    list_select_related = ("invitee", "invited_by", "guild", "party")
    search_fields = ("invitee__username", "guild__name", "party__name")
    readonly_fields = ("guild", "party", "invitee", "invited_by", "created_at", "expires_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj):
        services.invitation_withdraw(invitation=obj)

    def delete_queryset(self, request, queryset):
        for invitation in queryset:
            services.invitation_withdraw(invitation=invitation)
