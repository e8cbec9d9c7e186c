"""Settings checked one by one: numbers in range, switches, rate limits, origins, log levels, identity.

IDs `realtime.E001`–`E008`; the other modules of this package check services, relations and production.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from realtime.gc_tuning import parse_threshold
from realtime.ratelimit import parse_rate_limit

TAG = "rpgrealtime"

# The registry's column for instance ids (realtime/models/registry.py).
INSTANCE_ID_MAX_LENGTH = 200

_ABSENT = object()


@dataclass(frozen=True)
class NumberSetting:
    """A numeric environment variable: where its value lives and which values make sense."""

    name: str
    example: str  # the documented default, for the hint
    minimum: float = 0
    above: bool = True  # True: must be greater than `minimum`; False: `minimum` itself is allowed
    whole: bool = False
    unit: str = ""
    note: str = ""  # appended to the hint, e.g. what 0 means
    read: Callable[[], Any] | None = None  # default: settings.<name>

    def value(self) -> Any:
        if self.read is not None:
            return self.read()
        return getattr(settings, self.name, _ABSENT)

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        unit = f" of {self.unit}" if self.unit else ""
        bound = f"greater than {self.minimum:g}" if self.above else f"{self.minimum:g} or more"
        return f"{kind}{unit} {bound}"


def _database(option: str, *, sqlite: bool) -> Callable[[], Any]:
    def read() -> Any:
        database = settings.DATABASES.get("default", {})
        if database.get("ENGINE", "").endswith("sqlite3") != sqlite:
            return _ABSENT  # the variable only applies to the other kind of database
        return database.get("OPTIONS", {}).get(option, _ABSENT)

    return read


def _connection_max_age() -> Any:
    value = settings.DATABASES.get("default", {}).get("CONN_MAX_AGE", _ABSENT)
    return _ABSENT if value is None else value  # None: Django's "keep forever", set only in code


def _redis(key: str) -> Callable[[], Any]:
    def read() -> Any:
        redis = getattr(settings, "REDIS", None)
        return _ABSENT if redis is None else redis.get(key, _ABSENT)

    return read


def _seconds(name: str, example: str, **options: Any) -> NumberSetting:
    return NumberSetting(name, example, unit="seconds", note="fractions are allowed", **options)


def _limit(name: str, example: str, **options: Any) -> NumberSetting:
    return NumberSetting(name, example, minimum=0, above=False, whole=True, note="0 disables it", **options)


NUMBERS: tuple[NumberSetting, ...] = (
    # Durations: all positive.
    _seconds("WEBSOCKET_HEARTBEAT_INTERVAL", "30"),
    _seconds("WEBSOCKET_CONNECTION_TIMEOUT", "120"),
    _seconds("WEBSOCKET_CLEANUP_INTERVAL", "60"),
    _seconds("WEBSOCKET_TOKEN_REVALIDATE_INTERVAL", "60"),
    _seconds("WEBSOCKET_REGISTRY_FLUSH_INTERVAL", "2"),
    _seconds("WEBSOCKET_OUTBOX_POLL_INTERVAL", "1"),
    _seconds("COMBAT_TURN_TIMEOUT", "30"),
    _seconds("WORLD_MOVE_RATE_WINDOW", "1.0"),
    _seconds("WORLD_ZONE_REFRESH_INTERVAL", "60"),
    _seconds("RECOVERY_HISTORY_TTL", "300"),
    _seconds("JWT_ACCESS_TOKEN_LIFETIME", "900"),
    _seconds("JWT_REFRESH_TOKEN_LIFETIME", "86400"),
    NumberSetting(
        "WEBSOCKET_RESUME_WINDOW", "0.5", minimum=0, above=False, unit="seconds", note="0 sends stream frames at once"
    ),
    NumberSetting(
        "WORLD_RESUME_SECONDS", "300", minimum=0, above=False, unit="seconds", note="0 never resumes a position"
    ),
    # Database connection handling.
    NumberSetting(
        "DATABASE_CONN_MAX_AGE",
        "60",
        minimum=0,
        above=False,
        whole=True,
        unit="seconds",
        note="0 closes the connection after each request",
        read=_connection_max_age,
    ),
    NumberSetting(
        "DATABASE_CONNECT_TIMEOUT", "3", whole=True, unit="seconds", read=_database("connect_timeout", sqlite=False)
    ),
    NumberSetting(
        "SQLITE_BUSY_TIMEOUT", "20", minimum=0, above=False, unit="seconds", read=_database("timeout", sqlite=True)
    ),
    # Sizes and distances.
    NumberSetting("WEBSOCKET_MAX_MESSAGE_BYTES", "65536", whole=True, unit="bytes"),
    NumberSetting("WEBSOCKET_SEND_BUFFER_BYTES", "1048576", whole=True, unit="bytes"),
    NumberSetting("WORLD_NEARBY_RADIUS", "100"),
    NumberSetting("WORLD_MAX_STEP", "50"),
    NumberSetting("RECOVERY_HISTORY_SIZE", "1000", minimum=1, above=False, whole=True, unit="frames"),
    NumberSetting("PARTY_MAX_SIZE", "5", minimum=1, above=False, whole=True, unit="members"),
    NumberSetting("ADMIN_LOGIN_FAILURE_LIMIT", "10", minimum=1, above=False, whole=True, unit="failures"),
    NumberSetting(
        "NUM_PROXIES",
        "1",
        minimum=0,
        above=False,
        whole=True,
        unit="proxies",
        read=lambda: settings.REST_FRAMEWORK.get("NUM_PROXIES", _ABSENT),
    ),
    NumberSetting("REDIS_DB", "0", minimum=0, above=False, whole=True, read=_redis("db")),
    NumberSetting("REDIS_MAX_CONNECTIONS", "500", minimum=1, above=False, whole=True, read=_redis("max_connections")),
    # Caps and rate limits: 0 disables each.
    _limit("CHAT_RATE_LIMIT", "20"),
    _limit("WORLD_MOVE_RATE_LIMIT", "25"),
    _limit("COMBAT_START_RATE_LIMIT", "10"),
    _limit("WEBSOCKET_MAX_CONNECTIONS_PER_USER", "20"),
    _limit("WEBSOCKET_MAX_CONNECTIONS_PER_IP", "0"),
    _limit("WEBSOCKET_MAX_ANONYMOUS_PER_IP", "50"),
    _limit("WEBSOCKET_MAX_QUEUED_FRAMES", "64"),
    _limit("WEBSOCKET_MAX_QUEUED_BYTES", "262144"),
)

SWITCHES = ("DEBUG", "BEHIND_TLS_PROXY", "WEBSOCKET_METRICS_PUBLIC")
THROTTLES = {"auth_token": "AUTH_TOKEN_THROTTLE", "auth_register": "AUTH_REGISTER_THROTTLE"}
LOG_LEVELS = ("LOG_LEVEL", "CHANNELS_REDIS_LOG_LEVEL")
LOG_FORMATS = ("plain", "json")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def usable_number(name: str) -> float | None:
    """The setting's value when it is a usable number (already reported otherwise)."""
    value = getattr(settings, name, None)
    if not _is_number(value) or not math.isfinite(value):
        return None
    return float(value)


def _number_problem(spec: NumberSetting, value: Any) -> str | None:
    if not _is_number(value) or (spec.whole and not isinstance(value, int)):
        return "is not one"
    if not math.isfinite(value):
        return "is not finite"
    if value < spec.minimum or (spec.above and value == spec.minimum):
        return "is out of range"
    return None


@register(TAG)
def check_numbers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every numeric setting parses and lies in its range."""
    messages: list[CheckMessage] = []
    for spec in NUMBERS:
        value = spec.value()
        if value is _ABSENT or _number_problem(spec, value) is None:
            continue
        note = f" ({spec.note})" if spec.note else ""
        messages.append(
            Error(
                f"{spec.name} must be {spec.describe()}, not {value!r}.",
                hint=f"Set {spec.name} to e.g. {spec.example}{note}, or unset it for the default.",
                id="realtime.E001",
            )
        )
    return messages


@register(TAG)
def check_switches(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """On/off settings are booleans (a value that did not parse counts as off until fixed)."""
    return [
        Error(
            f"{name} must be true or false, not {value!r}; until fixed it counts as false.",
            hint=f"Set {name} to one of true/false, yes/no, on/off, 1/0.",
            id="realtime.E002",
        )
        for name in SWITCHES
        if not isinstance(value := getattr(settings, name, False), bool)
    ]


@register(TAG)
def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`WEBSOCKET_RATE_LIMIT` and the HTTP throttle rates have the shape their readers expect."""
    messages: list[CheckMessage] = []
    rate_limit = getattr(settings, "WEBSOCKET_RATE_LIMIT", "")
    try:
        parse_rate_limit(rate_limit)
    except (ImproperlyConfigured, AttributeError, TypeError, ValueError) as exc:
        messages.append(
            Error(
                f"WEBSOCKET_RATE_LIMIT is invalid ({rate_limit!r}): {exc}",
                hint="Set WEBSOCKET_RATE_LIMIT to RATE/BURST (frames per second per connection / burst), "
                "e.g. 20/40; 0 disables it.",
                id="realtime.E003",
            )
        )
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
    for scope, name in THROTTLES.items():
        if scope in rates and not _throttle_rate_valid(rates[scope]):
            messages.append(
                Error(
                    f"{name} must look like COUNT/PERIOD (e.g. 20/min), not {rates[scope]!r}.",
                    hint=f"Set {name} to a whole number of requests per s, min, hour or day, e.g. 20/min.",
                    id="realtime.E004",
                )
            )
    return messages


def _throttle_rate_valid(rate: Any) -> bool:
    # What DRF's SimpleRateThrottle.parse_rate accepts: "<int>/<s|m|h|d…>"; None turns it off.
    if rate is None:
        return True
    if not isinstance(rate, str) or rate.count("/") != 1:
        return False
    count, period = rate.split("/")
    return count.strip().isdigit() and period[:1] in ("s", "m", "h", "d")


@register(TAG)
def check_origins(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Browser origins are `scheme://host[:port]`, the form a browser sends in `Origin`."""
    messages: list[CheckMessage] = []
    for origin in getattr(settings, "WEBSOCKET_ALLOWED_ORIGINS", []):
        if origin == "*":
            continue
        parts = urlsplit(origin)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
            port_ok = True
        except ValueError:
            port_ok = False
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or not port_ok
        ):
            messages.append(
                Error(
                    f"WEBSOCKET_ALLOWED_ORIGINS entry {origin!r} is not an origin.",
                    hint="List origins as a browser sends them, scheme and host (and port if not the default), "
                    "comma separated: WEBSOCKET_ALLOWED_ORIGINS=https://game.example.com,https://www.example.com",
                    id="realtime.E005",
                )
            )
    return messages


@register(TAG)
def check_logging_and_identity(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Log levels and format are known; the instance id fits the registry."""
    messages: list[CheckMessage] = []
    known = logging.getLevelNamesMapping()
    for name in LOG_LEVELS:
        value = getattr(settings, name, "INFO")
        if value not in known:
            messages.append(
                Error(
                    f"{name} must be a log level, not {value!r}.",
                    hint=f"Set {name} to one of DEBUG, INFO, WARNING, ERROR or CRITICAL.",
                    id="realtime.E007",
                )
            )
    log_format = getattr(settings, "LOG_FORMAT", "plain")
    if log_format not in LOG_FORMATS:
        messages.append(
            Error(
                f"LOG_FORMAT must be plain or json, not {log_format!r}; until fixed, logs are plain.",
                hint="Set LOG_FORMAT=json for one JSON object per line, or unset it for plain text.",
                id="realtime.E007",
            )
        )
    instance_id = getattr(settings, "INSTANCE_ID", "")
    if not isinstance(instance_id, str) or not instance_id.strip() or len(instance_id) > INSTANCE_ID_MAX_LENGTH:
        messages.append(
            Error(
                f"INSTANCE_ID must be a non-empty name of at most {INSTANCE_ID_MAX_LENGTH} characters, "
                f"not {instance_id!r}.",
                hint="Set INSTANCE_ID to a name unique among running instances (e.g. app1), "
                "or unset it for <hostname>:<pid>.",
                id="realtime.E008",
            )
        )
    return messages


@register(TAG)
def check_gc_threshold(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`GC_THRESHOLD` is three thresholds for Python's garbage collector, or "python"."""
    value = getattr(settings, "GC_THRESHOLD", "python")
    try:
        parse_threshold(value)
    except ValueError as exc:
        return [
            Error(
                f"GC_THRESHOLD {exc}, not {value!r}; until fixed the server keeps Python's own thresholds.",
                hint="Set GC_THRESHOLD=2000,10,10 (the default), or GC_THRESHOLD=python for Python's own.",
                id="realtime.E012",
            )
        ]
    return []
