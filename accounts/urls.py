"""Account, guild, party and invitation routes under /api/v1/."""

from django.urls import path

from accounts import views
from accounts.models import GUILD, PARTY

urlpatterns = [
    path("auth/register/", views.RegisterView.as_view(), name="auth-register"),
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh/", views.RefreshView.as_view(), name="auth-token-refresh"),
    path("auth/me/", views.MeView.as_view(), name="auth-me"),
]

for kind, prefix in ((GUILD, "guilds"), (PARTY, "parties")):
    urlpatterns += [
        path(f"{prefix}/", views.GroupCreateView.as_view(kind=kind), name=f"{kind}-create"),
        path(f"{prefix}/leave/", views.GroupLeaveView.as_view(kind=kind), name=f"{kind}-leave"),
        path(f"{prefix}/<uuid:group_id>/join/", views.GroupJoinView.as_view(kind=kind), name=f"{kind}-join"),
        path(
            f"{prefix}/<uuid:group_id>/invitations/",
            views.InvitationCreateView.as_view(kind=kind),
            name=f"{kind}-invitations",
        ),
    ]
