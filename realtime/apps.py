"""App config for realtime."""

from django.apps import AppConfig

from realtime import checks  # noqa: F401  (registers the settings checks with Django)


class RealtimeConfig(AppConfig):
    name = "realtime"
    default_auto_field = "django.db.models.BigAutoField"
