"""System checks for every setting the project reads, so `manage.py check` fails before a bad start.

The settings module keeps a value that does not parse as text (rpgrealtime/env.py) instead of
raising, so that every problem is reported here, each naming its environment variable and how to
fix it. `manage.py check --deploy` adds the combinations that are only dangerous in production.
The image and the compose file run `check --deploy` before the server starts.

IDs: `realtime.E0xx` a value that cannot work, `realtime.W0xx` one that works badly,
`realtime.E1xx`/`W1xx` production hazards (`--deploy` only).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

from realtime.ratelimit import parse_rate_limit
from realtime.shards import MAX_SHARDS

TAG = "rpgrealtime"

# daphne's own limit as the image and scripts/serve start it (--websocket-max-message-size).
DAPHNE_MAX_MESSAGE_BYTES = 1 << 20
# The registry's column for instance ids (realtime/models/registry.py).
INSTANCE_ID_MAX_LENGTH = 200
LOCAL_HOSTS = frozenset({"localhost", ".localhost", "127.0.0.1", "[::1]", "::1"})
# Anything shorter is guessable by a scan; the list holds what example files and tutorials use.
WEAK_PASSWORD_LENGTH = 12
WEAK_PASSWORDS = frozenset({"postgres", "password", "secret", "changeme", "admin", "rpgrt", "root", "example"})

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


def _number(name: str) -> float | None:
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
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The Redis URL has a scheme redis-py knows; sentinel ports are real ports."""
    redis = getattr(settings, "REDIS", None)
    if not redis:
        return []
    messages: list[CheckMessage] = []
    url = redis.get("url") or ""
    if url and not redis.get("sentinels") and _redis_url_problem(url) is not None:
        messages.append(
            Error(
                f"REDIS_URL must be redis://host:port/db (or rediss:// for TLS, unix:///path.sock), "
                f"not {_without_password(url)!r}.",
                hint="Set REDIS_URL=redis://redis:6379/0, or unset it for the embedded default (one process).",
                id="realtime.E006",
            )
        )
    for host, port in redis.get("sentinels") or []:
        if not 0 < port < 65536:
            messages.append(
                Error(
                    f"REDIS_SENTINELS entry {host}:{port} has no valid port.",
                    hint="List sentinels as host:port with ports from 1 to 65535, e.g. sentinel-1:26379.",
                    id="realtime.E006",
                )
            )
    return messages


@register(TAG)
def check_channel_layer_shards(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`CHANNEL_LAYER_REDIS_URLS`: each entry a Redis URL, none twice, and a shared-state Redis too."""
    urls = getattr(settings, "CHANNEL_LAYER_REDIS_URLS", None) or []
    if not urls:
        return []
    hint = (
        "List the channel layer's Redis servers as URLs, comma separated, in the same order on every "
        "instance: CHANNEL_LAYER_REDIS_URLS=redis://layer-1:6379/0,redis://layer-2:6379/0 "
        "(or unset it: the layer then uses REDIS_URL)."
    )
    messages: list[CheckMessage] = []
    if getattr(settings, "REDIS", None) is None:
        messages.append(
            Error(
                "CHANNEL_LAYER_REDIS_URLS is set but neither REDIS_URL nor REDIS_SENTINELS: presence, rate limits "
                "and the other shared state need a Redis of their own; without one nothing uses these servers.",
                hint="Set REDIS_URL (or REDIS_SENTINELS) for the shared state as well, or unset "
                "CHANNEL_LAYER_REDIS_URLS for the embedded default (one process).",
                id="realtime.E009",
            )
        )
    seen: set[str] = set()
    for url in urls:
        problem = _redis_url_problem(url)
        if problem is not None:
            messages.append(
                Error(
                    f"CHANNEL_LAYER_REDIS_URLS entry {_without_password(url)!r} is not a Redis URL: {problem}.",
                    hint=hint,
                    id="realtime.E009",
                )
            )
        elif url in seen:
            messages.append(
                Error(
                    f"CHANNEL_LAYER_REDIS_URLS lists {_without_password(url)!r} twice: each entry is one shard.",
                    hint=hint,
                    id="realtime.E009",
                )
            )
        seen.add(url)
    if len(urls) > MAX_SHARDS:
        messages.append(
            Error(
                f"CHANNEL_LAYER_REDIS_URLS lists {len(urls)} servers; channels-redis can use at most {MAX_SHARDS}.",
                hint=hint,
                id="realtime.E009",
            )
        )
    return messages


def _redis_url_problem(url: str) -> str | None:
    """Why redis-py could not connect with `url` (its own reading of scheme, port, database), or None."""
    try:
        parts = urlsplit(url)
        parse_url(url)
    except ValueError as exc:
        return str(exc)
    if parts.scheme == "unix":
        return None if parts.path else "it names no socket path"
    if not parts.hostname:
        return "it names no host"
    database = parts.path.strip("/")
    if database and not database.isdigit():
        return f"the database after the host must be a number, not {database!r}"
    return None


def _without_password(url: str) -> str:
    """`url` with any password in it replaced, even when the URL does not parse."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:)[^/]*@", r"\1***@", url)


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
def check_relations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Settings that are each fine alone but contradict each other."""
    return list(_relations())


def _relations() -> Iterator[CheckMessage]:
    heartbeat = _number("WEBSOCKET_HEARTBEAT_INTERVAL")
    timeout = _number("WEBSOCKET_CONNECTION_TIMEOUT")
    cleanup = _number("WEBSOCKET_CLEANUP_INTERVAL")
    flush = _number("WEBSOCKET_REGISTRY_FLUSH_INTERVAL")
    if heartbeat is not None and timeout is not None:
        if heartbeat >= timeout:
            yield Error(
                f"WEBSOCKET_HEARTBEAT_INTERVAL ({heartbeat:g} s) must be shorter than WEBSOCKET_CONNECTION_TIMEOUT "
                f"({timeout:g} s): a client that only answers the server's pings would be closed as silent (4408).",
                hint="Keep the timeout at several heartbeat intervals, e.g. 30 and 120 (the defaults).",
                id="realtime.E010",
            )
        elif 2 * heartbeat > timeout:
            yield Warning(
                f"WEBSOCKET_CONNECTION_TIMEOUT ({timeout:g} s) is less than twice WEBSOCKET_HEARTBEAT_INTERVAL "
                f"({heartbeat:g} s): one late pong closes a live connection (4408).",
                hint="Keep the timeout at several heartbeat intervals, e.g. 30 and 120 (the defaults).",
                id="realtime.W010",
            )
    if flush is not None and cleanup is not None and flush > cleanup:
        yield Error(
            f"WEBSOCKET_REGISTRY_FLUSH_INTERVAL ({flush:g} s) must not exceed WEBSOCKET_CLEANUP_INTERVAL "
            f"({cleanup:g} s): new and closed connections would reach the registry (admin, metrics, ws_stats, "
            "cluster counts) later than the instance's own liveness refresh.",
            hint="Flush more often than the cleanup runs, e.g. 2 and 60 (the defaults).",
            id="realtime.E011",
        )
    if cleanup is not None and timeout is not None and cleanup > timeout:
        yield Warning(
            f"WEBSOCKET_CLEANUP_INTERVAL ({cleanup:g} s) exceeds WEBSOCKET_CONNECTION_TIMEOUT ({timeout:g} s): "
            f"the players of an instance that died stay online for three cleanup intervals ({3 * cleanup:g} s), "
            "far longer than a silent connection is kept.",
            hint="Keep the cleanup interval at most the connection timeout, e.g. 60 and 120 (the defaults).",
            id="realtime.W011",
        )
    step = _number("WORLD_MAX_STEP")
    radius = _number("WORLD_NEARBY_RADIUS")
    if step is not None and radius is not None and step > radius:
        yield Warning(
            f"WORLD_MAX_STEP ({step:g}) exceeds WORLD_NEARBY_RADIUS ({radius:g}): one move can take a player "
            "from out of a watcher's sight to beside it, unseen on the way.",
            hint="Keep WORLD_MAX_STEP at most WORLD_NEARBY_RADIUS, e.g. 50 and 100 (the defaults).",
            id="realtime.W012",
        )
    max_message = _number("WEBSOCKET_MAX_MESSAGE_BYTES")
    send_buffer = _number("WEBSOCKET_SEND_BUFFER_BYTES")
    if max_message is not None and max_message > DAPHNE_MAX_MESSAGE_BYTES:
        yield Warning(
            f"WEBSOCKET_MAX_MESSAGE_BYTES ({max_message:g}) exceeds the 1 MiB that the image and scripts/serve "
            "let daphne accept: bigger frames are closed with 1009 before the application sees them.",
            hint="Keep WEBSOCKET_MAX_MESSAGE_BYTES at most 1048576, or raise daphne's --websocket-max-message-size.",
            id="realtime.W013",
        )
    if max_message is not None and send_buffer is not None and send_buffer < max_message:
        yield Warning(
            f"WEBSOCKET_SEND_BUFFER_BYTES ({send_buffer:g}) is smaller than WEBSOCKET_MAX_MESSAGE_BYTES "
            f"({max_message:g}): a single large event would close its recipient as a slow consumer (4413).",
            hint="Keep the send buffer several times the largest message, e.g. 1048576 and 65536 (the defaults).",
            id="realtime.W014",
        )
    access = _number("JWT_ACCESS_TOKEN_LIFETIME")
    refresh = _number("JWT_REFRESH_TOKEN_LIFETIME")
    if access is not None and refresh is not None and refresh < access:
        yield Warning(
            f"JWT_REFRESH_TOKEN_LIFETIME ({refresh:g} s) is shorter than JWT_ACCESS_TOKEN_LIFETIME ({access:g} s): "
            "clients must log in again before their access token could ever be refreshed.",
            hint="Make refresh tokens outlive access tokens, e.g. 86400 and 900 (the defaults).",
            id="realtime.W015",
        )


@register(Tags.security, TAG, deploy=True)
def check_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Combinations that work but are dangerous on a public server (`check --deploy`)."""
    messages: list[CheckMessage] = []
    public_hosts = [host for host in settings.ALLOWED_HOSTS if host not in LOCAL_HOSTS]
    if settings.DEBUG is True and public_hosts:
        messages.append(
            Error(
                f"DEBUG is on while ALLOWED_HOSTS names public hosts ({', '.join(public_hosts)}): error pages "
                "would show tracebacks and settings to anyone.",
                hint="Set DEBUG=false in production (and SECRET_KEY and ALLOWED_HOSTS, which it then requires).",
                id="realtime.E101",
            )
        )
    if "*" in settings.ALLOWED_HOSTS:
        messages.append(
            Warning(
                "ALLOWED_HOSTS contains '*': any Host header is accepted, which opens the door to DNS rebinding "
                "against WebSocket handshakes and to poisoned links in e-mails.",
                hint="List the names clients use: ALLOWED_HOSTS=game.example.com (plus the ones health checks use).",
                id="realtime.W102",
            )
        )
    if getattr(settings, "WEBSOCKET_METRICS_PUBLIC", False) is True:
        messages.append(
            Warning(
                "WEBSOCKET_METRICS_PUBLIC is on: anyone can read /api/v1/websocket/metrics (instance names, "
                "connection counts, error rates).",
                hint="Set WEBSOCKET_METRICS_PUBLIC=false and read it with a staff token, or scrape /metrics "
                "on the internal network.",
                id="realtime.W103",
            )
        )
    if getattr(settings, "BEHIND_TLS_PROXY", False) is not True:
        messages.append(
            Warning(
                "BEHIND_TLS_PROXY is off: clients reach the server over plain ws:// and http://, so tokens, "
                "passwords and messages cross the network readable, and session cookies are not marked secure.",
                hint="Terminate TLS in the proxy (the bundled nginx does: docs/operations.md, Encryption in "
                "transit) and set BEHIND_TLS_PROXY=true.",
                id="realtime.W104",
            )
        )
    messages.extend(_database_password())
    return messages


def _database_password() -> Iterator[CheckMessage]:
    database = settings.DATABASES.get("default", {})
    if "postgresql" not in database.get("ENGINE", ""):
        return
    password = database.get("PASSWORD") or ""
    user = database.get("USER") or ""
    host = database.get("HOST") or ""
    if not password:
        # Local peer or trust authentication needs none; over the network it means anyone may connect.
        if host and not host.startswith("/") and host not in LOCAL_HOSTS:
            yield Warning(
                f"DATABASE_URL has no password for {host}.",
                hint="Give the database user a long random password and put it in DATABASE_URL "
                "(URL-encode special characters).",
                id="realtime.W105",
            )
        return
    if len(password) < WEAK_PASSWORD_LENGTH or password.lower() in WEAK_PASSWORDS or password == user:
        yield Error(
            f"The PostgreSQL password in DATABASE_URL is weak (shorter than {WEAK_PASSWORD_LENGTH} characters, "
            "the user name, or a well-known default).",
            hint="Set a long random password (with the bundled compose file: POSTGRES_PASSWORD, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'`).",
            id="realtime.E105",
        )
