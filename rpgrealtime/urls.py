"""HTTP routes: the API, the admin, the browser client and Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("accounts.urls")),
    path("api/v1/websocket/", include("realtime.urls")),
    # The OpenAPI document of these routes: YAML, or JSON with ?format=json.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("play/", include("play.urls")),
    path("", RedirectView.as_view(pattern_name="play:index"), name="home"),
    path("", include("django_prometheus.urls")),
]
