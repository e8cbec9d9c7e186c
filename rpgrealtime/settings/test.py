"""Settings for the test suite: the base settings with test-friendly defaults."""

from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-hs256-signing")
# Test processes never use an outside Redis unless a test starts its own and says so.
os.environ.setdefault("REDIS_URL", "")
os.environ.setdefault("CHANNEL_LAYER_REDIS_URLS", "")

from rpgrealtime.settings.base import *
from rpgrealtime.settings.base import BASE_DIR, DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, tests only

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the server processes started by integration tests share it.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_SQLITE_PATH", str(BASE_DIR / ".test-db.sqlite3"))}
else:
    # Close connections after each use so test threads leave none open at teardown.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
