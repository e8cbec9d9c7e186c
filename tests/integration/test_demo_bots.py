"""`run_demo_bots` against a real server: the bots walk, chat, show presence, fight, and leave.

One embedded instance (no Redis), as `scripts/serve` runs it; the command runs as its own
process with the server's database and settings, as it would beside `scripts/serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest
from django.core.management import call_command

from accounts.models import Guild
from play import services
from realtime.models import CombatParticipant
from tests.support.cluster import ROOT, ServerProcess, WsClient
from tests.support.db import db
from tests.support.world import create_default_zones

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(transactional_db, settings):
    settings.DEBUG = True
    create_default_zones()  # before the start: the instance reads the zones then
    call_command("seed_demo")
    running = ServerProcess("bots", redis=None).start()
    try:
        yield running
    finally:
        with contextlib.suppress(Exception):
            running.terminate(10)
        running.kill()


async def test_bots_walk_chat_show_presence_fight_and_leave(server):
    guild_id = (await db(Guild.objects.get)(name=services.DEMO_GUILD)).pk
    _, token = await asyncio.to_thread(server.register, "watcher")
    status, _ = await asyncio.to_thread(server.request, "POST", f"/api/v1/guilds/{guild_id}/join/", None, token)
    assert status == 200
    # Watchers read only some of what the bots send: an unbounded queue keeps the socket read,
    # so their close handshakes are answered at once at the end.
    world = await WsClient.open(f"{server.ws}/ws/world", token, max_queue=None)
    entered_zone = await world.request({"type": "zone_change", "zone": "starter_town"})
    assert entered_zone["type"] == "zone_changed"  # at the spawn point, where the bots walk
    chat = await WsClient.open(f"{server.ws}/ws/chat", token, max_queue=None)
    game = await WsClient.open(f"{server.ws}/ws/game", token, max_queue=None)

    bots = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "run_demo_bots",
        "--count=2",
        f"--url={server.http}",
        "--duration=10",
        "--chat-interval=1.5",
        "--status-interval=1.5",
        "--fight-interval=1.5",
        "--seed=7",
        cwd=ROOT,
        env=server.environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        seen = await world.recv_type("player_entered", timeout=30)
        assert seen["username"].endswith("_bot")
        walked = await world.recv_type("player_movement", timeout=15, user_id=seen["user_id"])
        assert (walked["x"], walked["y"]) != (seen["x"], seen["y"])
        said = await chat.recv_type("chat_message", timeout=20)
        assert said["user"].endswith("_bot") and said["content"]
        # Bots are in the demo guild: a guild member hears their presence.
        presence = await game.recv_type("player_status", timeout=20)
        assert presence["username"].endswith("_bot")

        output, _ = await asyncio.wait_for(bots.communicate(), 60)
    except TimeoutError as exc:
        # Say what the bots printed: a wait that timed out is otherwise a mystery.
        if bots.returncode is None:
            bots.kill()
        printed, _ = await bots.communicate()
        raise AssertionError(f"bots did not show up in time; they printed:\n{printed.decode()}") from exc
    finally:
        if bots.returncode is None:
            bots.kill()
            await bots.wait()
    text = output.decode()
    assert bots.returncode == 0, text
    assert "Running 2 demo bots (rowan_bot, sage_bot)" in text and "Demo bots stopped." in text
    # They closed their connections: watchers see them go.
    gone = await world.recv_type("player_left", timeout=15)
    assert gone["zone"] == "starter_town"
    fought = await db(CombatParticipant.objects.filter(user__username__endswith="_bot").exists)()
    assert fought
    for client in (world, chat, game):
        await client.close()
