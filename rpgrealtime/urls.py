"""HTTP routes: the API, the admin and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/websocket/", include("realtime.urls")),
    path("", include("django_prometheus.urls")),
]
