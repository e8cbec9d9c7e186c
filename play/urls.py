"""Routes of the browser client: the page and the one JSON route it needs besides /api/v1/."""

from django.urls import path

from play import views

app_name = "play"

urlpatterns = [
    path("", views.play_page, name="index"),
    path("api/roster/", views.RosterView.as_view(), name="roster"),
]
