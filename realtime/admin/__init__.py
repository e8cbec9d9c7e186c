"""Django admin of the real-time system, one module per feature."""

from realtime.admin import registry, world  # noqa: F401
