# rpgrealtime server image: one daphne process per container; scale out by running more
# containers against the same PostgreSQL and Redis (docker-compose.yml, docs/operations.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies only (requirements.txt lists tests and tooling after "# Tests and
# tooling"), every one pinned and checked against its recorded hash (scripts/lock).
COPY requirements-runtime.lock .
RUN pip install --require-hashes -r requirements-runtime.lock \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rpgrt

COPY . .
# Static files (admin) are collected at build time and served by WhiteNoise.
RUN DEBUG=true SECRET_KEY=build-only-not-secret python manage.py collectstatic --noinput --verbosity 0

USER rpgrt
EXPOSE 8000

# SIGTERM starts the drain: connections get 1001, registry records go, the process exits
# (bounded: see SHUTDOWN_TIMEOUT in docs/operations.md). Give it a stop grace period of 30 s.
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/websocket/health', timeout=2).status == 200 else 1)"]

# Every start checks the configuration first (`manage.py check --deploy`): a bad setting stops
# the container with a message naming the variable.
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]

# --proxy-headers: the client address comes from X-Forwarded-For set by the proxy (per-address
# caps, logs). --websocket_timeout -1: no forced close after 24 h; the application's own
# heartbeat (WEBSOCKET_CONNECTION_TIMEOUT) closes dead connections. --websocket-max-*-size: a
# frame or message over 1 MiB is refused by the transport (close 1009) before it is buffered
# whole; the application's own limit (WEBSOCKET_MAX_MESSAGE_BYTES, 64 KiB) answers below that.
# backlog=1024: Twisted's default listen queue of 50 overflows in a reconnect storm (the kernel
# drops SYNs; clients retry after 1, 3, 7 s). The host's net.core.somaxconn caps it (4096 today).
CMD ["daphne", "-e", "tcp:port=8000:interface=0.0.0.0:backlog=1024", "--proxy-headers", "--websocket_timeout", "-1", \
     "--websocket-max-message-size", "1048576", "--websocket-max-frame-size", "1048576", \
     "rpgrealtime.asgi:application"]
