"""Admin for the connection registry and offline deliveries."""

from django.contrib import admin

from realtime.models import Connection, Instance, PendingDelivery


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ("id", "host", "pid", "connections", "last_seen", "started_at", "draining")


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    list_display = ("id", "endpoint", "username", "instance_id", "client_addr", "connected_at", "last_seen")
    list_filter = ("endpoint", "instance_id")
    search_fields = ("id", "username", "client_addr")


@admin.register(PendingDelivery)
class PendingDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "event_type", "created_at", "delivered_at")
    list_filter = ("event_type",)
