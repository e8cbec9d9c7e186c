"""Settings for rpgrealtime, read from the environment (docs/operations.md lists every variable)."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from rpgrealtime import __version__
from rpgrealtime.env import Env
from rpgrealtime.redis_config import (
    cache_settings,
    channel_layer_hosts,
    channel_layer_urls_from_env,
    redis_settings_from_env,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Numbers and switches that do not parse are kept as text (falsy `Unparsed`): `manage.py check`
# reports them by name (realtime/checks/) instead of a traceback here or at the first accept.
# The refusals below stay: without a key or hosts nothing can be served safely at all.
env = Env()

# --- Safety switches -------------------------------------------------------------------------

DEBUG = env.bool_or_raw("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string for production "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`), or set "
            "DEBUG=true for local development."
        )
    # Development only: DEBUG is on, so a fixed key is acceptable and tokens survive restarts.
    SECRET_KEY = "insecure-development-key-do-not-use-in-production-0123456789"
elif not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY is too short: use at least 32 random characters.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is empty while DEBUG is off: set ALLOWED_HOSTS to the host names "
        "clients use (comma separated), e.g. ALLOWED_HOSTS=game.example.com."
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind a TLS-terminating proxy that also redirects plain HTTP to HTTPS and sends HSTS, as the
# bundled nginx does (deploy/nginx.conf, docs/operations.md): cookies only over HTTPS, and
# `https` URLs. Django's own redirect and HSTS checks would then report what the proxy does.
BEHIND_TLS_PROXY = env.bool_or_raw("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY is True:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]

# --- Applications ----------------------------------------------------------------------------

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "channels",
    "axes",
    "accounts",
    "realtime",
    "play",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns an admin login refused by the lockout below into its answer (429); last, as axes asks.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "rpgrealtime.urls"
ASGI_APPLICATION = "rpgrealtime.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets several server processes read while one writes; IMMEDIATE avoids
            # "database is locked" upgrades from read to write transactions.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            # Seconds a write waits for a lock held elsewhere before failing ("database is
            # locked"; clients get `unavailable`). Every database call of a process runs on one
            # thread, so a long wait stalls them all: keep it short where that matters.
            "timeout": env.float_or_raw("SQLITE_BUSY_TIMEOUT", default=20.0),
        }
    )
    # Keep the connection: opening one runs the PRAGMAs above, a cost on every chat message.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int_or_raw("DATABASE_CONN_MAX_AGE", default=60)
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int_or_raw("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int_or_raw("DATABASE_CONNECT_TIMEOUT", default=3)
    )

# --- Redis: channel layer, shared state, cache -----------------------------------------------

REDIS = redis_settings_from_env(env)  # None when REDIS_URL and REDIS_SENTINELS are unset
# The channel layer's own Redis servers, sharded by channels-redis; empty: the layer uses REDIS.
# Shared state stays on REDIS either way. Without REDIS they are not used (the check says so).
CHANNEL_LAYER_REDIS_URLS = channel_layer_urls_from_env(env)

if REDIS is None:
    # Embedded default: one process, nothing to install. Several instances need Redis.
    # In memory; other processes (management commands) reach it through a database outbox.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.EmbeddedChannelLayer",
            # One hub channel per process carries every broadcast, so it needs room.
            "CONFIG": {"capacity": 100_000, "expiry": 60},
        }
    }
else:
    # Pub/sub layer: one PUBLISH per broadcast, nothing stored in Redis that could go stale
    # when an instance dies (docs/architecture.md explains the choice).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": channel_layer_hosts(REDIS, CHANNEL_LAYER_REDIS_URLS), "prefix": "rpgrt"},
        }
    }
# The cache holds only the HTTP throttle counters: in Redis (single server or Sentinel) they are
# shared by every instance; embedded, they live in the process.
CACHES = {"default": cache_settings(REDIS)}

# --- Auth and REST ---------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's defaults, except that JSON nested too deeply is a 400, not a 500.
    "DEFAULT_PARSER_CLASSES": [
        "rpgrealtime.parsers.JSONBodyParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # Brute-force protection on the token route, per client address.
        "auth_token": env.str("AUTH_TOKEN_THROTTLE", default="20/min"),
        "auth_register": env.str("AUTH_REGISTER_THROTTLE", default="20/hour"),
        # Guild and party routes (create, join, leave, invite), per user: each one moves open
        # connections on every instance, and an invitation notifies another player.
        "membership": env.str("MEMBERSHIP_THROTTLE", default="30/min"),
    },
    "NUM_PROXIES": env.int_or_raw("NUM_PROXIES", default=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document of the HTTP routes, served at /api/schema/ (docs/operations.md). The
# WebSocket protocol has its own, docs/asyncapi.json (`manage.py asyncapi`).
SPECTACULAR_SETTINGS = {
    "TITLE": "rpgrealtime HTTP API",
    "DESCRIPTION": (
        "Accounts, guilds, parties and invitations, and the real-time system's health, metrics and "
        "publish routes (docs/protocol.md §8). The WebSocket protocol is described by docs/asyncapi.json."
    ),
    "VERSION": __version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "OAS_VERSION": "3.1.0",  # JSON Schema 2020-12 in the components: tests check real answers against them
    # Routes DRF does not serve (the async health check, Prometheus' /metrics) described by hand.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "realtime.views.openapi.describe_plain_routes",
    ],
}

# Seconds, kept as read so realtime/checks/ can report a bad value; simplejwt gets timedeltas.
JWT_ACCESS_TOKEN_LIFETIME = env.float_or_raw("JWT_ACCESS_TOKEN_LIFETIME", default=900.0)
JWT_REFRESH_TOKEN_LIFETIME = env.float_or_raw("JWT_REFRESH_TOKEN_LIFETIME", default=86400.0)


def _lifetime(seconds: float | str) -> timedelta | str:
    # A value that did not parse is passed on as text: issuing a token then fails loudly.
    return timedelta(seconds=seconds) if isinstance(seconds, int | float) else seconds


SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": _lifetime(JWT_ACCESS_TOKEN_LIFETIME),
    "REFRESH_TOKEN_LIFETIME": _lifetime(JWT_REFRESH_TOKEN_LIFETIME),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}

# --- Real-time behaviour (docs/protocol.md, docs/operations.md) -------------------------------

WEBSOCKET_HEARTBEAT_INTERVAL = env.float_or_raw("WEBSOCKET_HEARTBEAT_INTERVAL", default=30.0)
WEBSOCKET_CONNECTION_TIMEOUT = env.float_or_raw("WEBSOCKET_CONNECTION_TIMEOUT", default=120.0)
WEBSOCKET_CLEANUP_INTERVAL = env.float_or_raw("WEBSOCKET_CLEANUP_INTERVAL", default=60.0)
WEBSOCKET_TOKEN_REVALIDATE_INTERVAL = env.float_or_raw("WEBSOCKET_TOKEN_REVALIDATE_INTERVAL", default=60.0)
WEBSOCKET_MAX_MESSAGE_BYTES = env.int_or_raw("WEBSOCKET_MAX_MESSAGE_BYTES", default=65536)
WEBSOCKET_RATE_LIMIT = env.str("WEBSOCKET_RATE_LIMIT", default="20/40")
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=[])
WEBSOCKET_METRICS_PUBLIC = env.bool_or_raw("WEBSOCKET_METRICS_PUBLIC", default=False)
# Unsent bytes a connection may hold before it counts as a slow consumer and is closed.
WEBSOCKET_SEND_BUFFER_BYTES = env.int_or_raw("WEBSOCKET_SEND_BUFFER_BYTES", default=1 << 20)
# Connection caps (0 disables): per user across the cluster, per client address per instance,
# anonymous connections per client address per instance.
WEBSOCKET_MAX_CONNECTIONS_PER_USER = env.int_or_raw("WEBSOCKET_MAX_CONNECTIONS_PER_USER", default=20)
WEBSOCKET_MAX_CONNECTIONS_PER_IP = env.int_or_raw("WEBSOCKET_MAX_CONNECTIONS_PER_IP", default=0)
WEBSOCKET_MAX_ANONYMOUS_PER_IP = env.int_or_raw("WEBSOCKET_MAX_ANONYMOUS_PER_IP", default=50)
# Client frames one connection may have waiting to be handled, and their bytes (0: unbounded);
# past either: 4429. The count is above the rate limit's burst, so a client within its rate is
# never closed for it; the bytes bound what one connection can make an instance hold.
WEBSOCKET_MAX_QUEUED_FRAMES = env.int_or_raw("WEBSOCKET_MAX_QUEUED_FRAMES", default=64)
WEBSOCKET_MAX_QUEUED_BYTES = env.int_or_raw("WEBSOCKET_MAX_QUEUED_BYTES", default=256 * 1024)
# How often buffered registry changes (new/closed connections, activity) reach the database.
WEBSOCKET_REGISTRY_FLUSH_INTERVAL = env.float_or_raw("WEBSOCKET_REGISTRY_FLUSH_INTERVAL", default=2.0)
# Embedded default only (no Redis): how often the server picks up sends of other processes.
WEBSOCKET_OUTBOX_POLL_INTERVAL = env.float_or_raw("WEBSOCKET_OUTBOX_POLL_INTERVAL", default=1.0)

# The server process's garbage collector (realtime/gc_tuning.py): three thresholds, or "python".
GC_THRESHOLD = env.str("GC_THRESHOLD", default="2000,10,10")

# After `connection_established`, stream frames wait at most this long for the client's first
# frame, so a `resume` sent at once replays the past before the present arrives (0: no wait).
WEBSOCKET_RESUME_WINDOW = env.float_or_raw("WEBSOCKET_RESUME_WINDOW", default=0.5)
# Recovery of missed stream frames: frames kept per stream, and for how long (seconds).
RECOVERY_HISTORY_SIZE = env.int_or_raw("RECOVERY_HISTORY_SIZE", default=1000)
RECOVERY_HISTORY_TTL = env.float_or_raw("RECOVERY_HISTORY_TTL", default=300.0)

CHAT_RATE_LIMIT = env.int_or_raw("CHAT_RATE_LIMIT", default=20)  # messages per 10 s per user
COMBAT_TURN_TIMEOUT = env.float_or_raw("COMBAT_TURN_TIMEOUT", default=30.0)
COMBAT_START_RATE_LIMIT = env.int_or_raw("COMBAT_START_RATE_LIMIT", default=10)  # per user per minute; 0 disables
WORLD_NEARBY_RADIUS = env.float_or_raw("WORLD_NEARBY_RADIUS", default=100.0)
WORLD_MAX_STEP = env.float_or_raw("WORLD_MAX_STEP", default=50.0)
# Moves per user per window, across connections and instances (0 disables): 25 per second lets
# a 20 Hz client through with room for network jitter bunching its updates (docs/protocol.md).
WORLD_MOVE_RATE_LIMIT = env.int_or_raw("WORLD_MOVE_RATE_LIMIT", default=25)
WORLD_MOVE_RATE_WINDOW = env.float_or_raw("WORLD_MOVE_RATE_WINDOW", default=1.0)
# Each instance re-reads the zone table this often; admin edits reach instances at once anyway.
WORLD_ZONE_REFRESH_INTERVAL = env.float_or_raw("WORLD_ZONE_REFRESH_INTERVAL", default=60.0)
# A player whose last world connection closed less than this ago re-enters where it left.
WORLD_RESUME_SECONDS = env.float_or_raw("WORLD_RESUME_SECONDS", default=300.0)

PARTY_MAX_SIZE = env.int_or_raw("PARTY_MAX_SIZE", default=5)
# Failed admin logins for one username from one address within 15 minutes before refusals.
ADMIN_LOGIN_FAILURE_LIMIT = env.int_or_raw("ADMIN_LOGIN_FAILURE_LIMIT", default=10)

# --- Admin login lockout (django-axes, docs/operations.md "Admin") ----------------------------
# Only /admin/login/ is watched: the token route has its own throttle and answers 401, and game
# players never go through the admin. Attempts are counted in the database (shared by every
# instance, PostgreSQL or SQLite, and still counted while Redis is down).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out username and address first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.lockout.AdminLoginHandler"
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = ADMIN_LOGIN_FAILURE_LIMIT
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]  # this username from this address
AXES_COOLOFF_TIME = timedelta(minutes=15)
# Attempts during a lockout do not extend it: it ends 15 minutes after the failure that caused it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False  # no banner in every process's log at start

INSTANCE_ID = env.str("INSTANCE_ID", default=f"{socket.gethostname()}:{os.getpid()}")

# --- Static files, i18n ----------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# The play page imports the JavaScript client library from where it lives in the repository.
STATICFILES_DIRS = [("rpgrealtime-client", BASE_DIR / "clients" / "js" / "src")]
WHITENOISE_USE_FINDERS = True  # serve straight from the apps without collectstatic in development

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ---------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
CHANNELS_REDIS_LOG_LEVEL = env.str("CHANNELS_REDIS_LOG_LEVEL", default="CRITICAL").strip().upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()


def _level(name: str, fallback: str) -> str:
    # logging.config would raise on an unknown name before any check runs; the check names it.
    return name if name in logging.getLevelNamesMapping() else fallback


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_tokens": {"()": "rpgrealtime.logging.RedactTokensFilter"},
        "connection_context": {"()": "rpgrealtime.logging.ConnectionContextFilter", "instance": INSTANCE_ID},
    },
    "formatters": {
        "plain": {"()": "rpgrealtime.logging.PlainFormatter"},
        "json": {"()": "rpgrealtime.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["connection_context", "redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": _level(LOG_LEVEL, "INFO")},
    "loggers": {
        # Django's defaults give these loggers handlers of their own (plain text, or mail to
        # ADMINS): route them through the one handler instead, at the root's level.
        "django": {"handlers": [], "level": "NOTSET", "propagate": True},
        "django.server": {"handlers": [], "level": "NOTSET", "propagate": True},
        "django.db.backends": {"level": "INFO"},
        # channels-redis logs every failed receive during a Redis outage; our own
        # housekeeping logs the outage and the recovery once each instead.
        "channels_redis.pubsub": {"level": _level(CHANNELS_REDIS_LOG_LEVEL, "CRITICAL")},
    },
}
