"""Account, guild and party routes under /api/v1/."""

from django.urls import path

from accounts import views

urlpatterns = [
    path("auth/register/", views.RegisterView.as_view(), name="auth-register"),
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh/", views.RefreshView.as_view(), name="auth-token-refresh"),
    path("auth/me/", views.MeView.as_view(), name="auth-me"),
    path("guilds/", views.GuildCreateView.as_view(), name="guild-create"),
    path("guilds/leave/", views.GuildLeaveView.as_view(), name="guild-leave"),
    path("guilds/<uuid:guild_id>/join/", views.GuildJoinView.as_view(), name="guild-join"),
    path("parties/", views.PartyCreateView.as_view(), name="party-create"),
    path("parties/leave/", views.PartyLeaveView.as_view(), name="party-leave"),
    path("parties/<uuid:party_id>/join/", views.PartyJoinView.as_view(), name="party-join"),
]
