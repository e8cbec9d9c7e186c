"""Database access from async tests, through the same thread and cleanup as the server uses."""

from channels.db import database_sync_to_async as db

__all__ = ["db"]
