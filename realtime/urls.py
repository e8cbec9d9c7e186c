"""Routes of the real-time system under /api/v1/websocket/."""

from django.urls import path

from realtime import views

urlpatterns = [
    path("health", views.health_check, name="websocket-health"),
    path("metrics", views.MetricsView.as_view(), name="websocket-metrics"),
    path("publish", views.PublishView.as_view(), name="websocket-publish"),
]
