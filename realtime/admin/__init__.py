"""Django admin of the real-time system, one module per feature."""

from realtime.admin import chat, combat, registry, world  # noqa: F401
