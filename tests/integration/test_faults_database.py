"""The database unavailable for a few seconds under two real instances, then back.

PostgreSQL (DATABASE_URL=postgres://…): the instances reach it through a TCP proxy the test
cuts — every connection dropped, new ones refused. SQLite (the default): the test holds an
exclusive lock (`BEGIN EXCLUSIVE`) and the instances wait at most SQLITE_BUSY_TIMEOUT for it;
in WAL mode reads go on, writes fail. Either way clients get clear `unavailable` errors, no
consumer dies, nobody is declared dead or offline, and everything works again afterwards.

This module starts its own cluster (the shared one must not lose its database).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from realtime.models import ChatMessage, Instance
from tests.support import cluster as cluster_support
from tests.support.cluster import Cluster, WsClient
from tests.support.db import db
from tests.support.faults import TcpProxy, health, until_health

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 4.5  # longer than three cleanup intervals (1 s in tests): every registry row goes stale


@dataclass
class Outage:
    kind: str  # "postgresql" or "sqlite"
    cluster: Cluster
    proxy: TcpProxy | None = None
    lock: sqlite3.Connection | None = None

    def begin(self) -> None:
        if self.proxy is not None:
            self.proxy.cut()
        else:
            path = connection.settings_dict["NAME"]
            self.lock = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.lock.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        elif self.lock is not None:
            self.lock.execute("ROLLBACK")
            self.lock.close()
            self.lock = None


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="module")
def outage(django_db_setup, django_db_blocker):
    proxy = None
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            params = connection.settings_dict
            proxy = TcpProxy(params.get("HOST") or "127.0.0.1", int(params.get("PORT") or 5432)).start()
            env = {"DATABASE_URL": through(proxy, cluster_support.test_database_url())}
        else:
            env = {"SQLITE_BUSY_TIMEOUT": "0.5"}
        cluster = Cluster(size=2, env=env).start()
    made = Outage(connection.vendor, cluster, proxy=proxy)
    try:
        yield made
    finally:
        made.end()
        cluster.stop()
        if proxy is not None:
            proxy.stop()


def figure(name: str, **values: Any) -> None:
    print("FIGURE", name, " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))


async def test_database_unavailable_then_back(outage, unique):
    a, b = outage.cluster[0], outage.cluster[1]
    alice_id, alice = await asyncio.to_thread(a.register, unique("alice"))
    bob_id, bob = await asyncio.to_thread(b.register, unique("bob"))
    _, carol = await asyncio.to_thread(b.register, unique("carol"))
    status, guild = await asyncio.to_thread(
        a.request, "POST", "/api/v1/guilds/", {"name": unique("G"), "open": True}, alice
    )
    assert status == 201
    await asyncio.to_thread(b.request, "POST", f"/api/v1/guilds/{guild['id']}/join/", None, bob)
    alice_chat = await WsClient.open(f"{a.ws}/ws/chat", alice)
    alice_game = await WsClient.open(f"{a.ws}/ws/game", alice)
    bob_chat = await WsClient.open(f"{b.ws}/ws/chat", bob)
    bob_game = await WsClient.open(f"{b.ws}/ws/game", bob)
    carol_combat = await WsClient.open(f"{b.ws}/ws/combat", carol)
    everyone = (alice_chat, alice_game, bob_chat, bob_game, carol_combat)
    await alice_chat.request({"type": "chat_message", "channel": "global", "content": "before"})
    await bob_chat.recv_type("chat_message", content="before")
    logged_before = [server.log_text().count("database unavailable") for server in (a, b)]

    outage.begin()
    began = time.monotonic()
    try:
        started = time.monotonic()
        refused = await alice_chat.request({"type": "chat_message", "channel": "global", "content": "lost"}, timeout=15)
        write_error_seconds = time.monotonic() - started
        assert refused["type"] == "error" and refused["code"] == "unavailable", refused
        assert "Traceback" not in refused["message"] and "SELECT" not in refused["message"].upper()
        start = await carol_combat.request({"type": "combat_start", "monsters": ["goblin"]}, timeout=15)
        assert (start["type"], start["code"]) == ("error", "unavailable")
        for client in everyone:
            assert (await client.request({"type": "ping"}, timeout=10))["type"] == "pong"
        # A new connection: authenticating reads the user.
        newcomer = await WsClient.open(f"{b.ws}/ws/chat", bob, expect_established=False)
        first = await newcomer.recv(10)
        if outage.kind == "sqlite":
            assert first["type"] == "connection_established"
            await newcomer.close()
        else:  # not "invalid_token": the token is fine, the database is not
            assert (first["type"], first["code"]) == ("error", "unavailable")
            assert await newcomer.closed_with(10) == 4503
        history = await bob_chat.request({"type": "history_request", "channel": "global"}, timeout=15)
        status, body = await asyncio.to_thread(health, a)
        if outage.kind == "sqlite":
            # WAL: reads go on while another connection holds the write lock.
            assert history["type"] == "history" and "before" in [m["content"] for m in history["messages"]]
            assert status == 200
        else:
            assert (history["type"], history["code"]) == ("error", "unavailable")
            assert status == 503 and body["checks"]["database"]["status"] == "error"
            assert set(body["checks"]["database"]) <= {"status", "error", "latency_ms"}  # no hosts, no SQL
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
        assert a.alive() and b.alive()
    finally:
        outage.end()
    ended = time.monotonic()

    back = await until_health(a, 200) if outage.kind != "sqlite" else 0.0

    async def chat_works() -> float:
        deadline = time.monotonic() + 20
        while True:
            reply = await alice_chat.request(
                {"type": "chat_message", "channel": "global", "content": "after"}, timeout=15
            )
            if reply["type"] == "ack":
                return time.monotonic() - ended
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.2)

    chat_back = await chat_works()
    assert (await bob_chat.recv_type("chat_message", content="after"))["user_id"] == alice_id
    # Nobody was declared dead when the rows came back old, so nobody went offline.
    assert await bob_game.nothing_of("player_status", 2.5)
    assert set(await db(lambda: list(Instance.objects.values_list("id", flat=True)))()) >= {
        a.instance_id,
        b.instance_id,
    }
    for client in everyone:
        assert (await client.request({"type": "ping"}, timeout=10))["type"] == "pong"
    state = await carol_combat.request({"type": "combat_start", "monsters": ["goblin"]}, timeout=15)
    assert state["type"] == "combat_state"
    contents = set(await db(lambda: list(ChatMessage.objects.values_list("content", flat=True)))())
    assert {"before", "after"} <= contents and "lost" not in contents
    # The outage and the recovery were logged once on each instance, not once per failure.
    for server, before in zip((a, b), logged_before, strict=True):
        log = server.log_text()
        assert log.count("database unavailable") == before + 1, server.log_tail()
        assert "Traceback" not in log, server.log_tail()
    figure(
        f"database_{outage.kind}",
        outage=ended - began,
        write_error_after=write_error_seconds,
        health_200_after=back,
        chat_works_after=chat_back,
    )
    for client in everyone:
        await client.close()
