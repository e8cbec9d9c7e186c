"""The operations admin and management commands on the in-process layer (one instance).

Cross-instance behaviour (admin on one instance, connection on another) is covered in
tests/integration/test_ops.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import AsyncClient
from django.utils import timezone

from accounts.models import Guild, Party
from realtime import boot
from realtime import hub as hub_module
from realtime.boot import ensure_runtime
from realtime.features import monitoring, operations
from realtime.features.game import achievement_grant
from realtime.layers import EmbeddedChannelLayer
from realtime.models import Connection, Instance, OutboxMessage, PendingDelivery
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

CONNECTIONS = "/admin/realtime/connection/"
INSTANCES = "/admin/realtime/instance/"
DASHBOARD = "/admin/realtime/instance/dashboard/"


@pytest.fixture
def fast_registry(settings):
    """Registry rows written quickly; liveness generous (a loaded machine must not make this
    instance look dead); heartbeats at their defaults."""
    settings.WEBSOCKET_REGISTRY_FLUSH_INTERVAL = 0.1
    settings.WEBSOCKET_CLEANUP_INTERVAL = 5
    return settings


async def admin_client(**fields) -> AsyncClient:
    fields = fields or {"is_staff": True, "is_superuser": True}
    client = AsyncClient()
    await client.aforce_login(await db(make_user)(**fields))
    return client


async def recorded(*clients, timeout: float = 5.0) -> None:
    """Wait until the registry holds these connections (flushed every 0.1 s with fast_registry)."""
    ids = {c.established["connection_id"] for c in clients}
    for _ in range(int(timeout / 0.05)):
        if await db(lambda: Connection.objects.filter(id__in=ids).count())() == len(ids):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("connections were not recorded")


async def silent(client, seconds: float = 0.3) -> bool:
    """Nothing but heartbeat pings arrives within `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        if await client.communicator.receive_nothing(remaining):
            return True
        output = await client.communicator.receive_output()
        if output["type"] != "websocket.send" or json.loads(output["text"])["type"] != "ping":
            return False
    return True


def stale_instance(instance_id: str, connections: int = 0, *, hours: float = 1.0) -> None:
    long_ago = timezone.now() - timedelta(hours=hours)
    Instance.objects.create(id=instance_id, host="gone", pid=1, last_seen=long_ago, started_at=long_ago)
    for n in range(connections):
        Connection.objects.create(id=f"{instance_id}-c{n}", instance_id=instance_id, endpoint="game")


# --- live connections -------------------------------------------------------------------------


async def test_connection_list_filters_and_search(fast_registry):
    user = await db(make_user)(username="searchable_hero")
    game = await connect("/ws/game", access_token(user))
    anonymous = await connect("/ws/world")
    await recorded(game, anonymous)
    client = await admin_client()
    runtime = await ensure_runtime()
    game_id, anonymous_id = game.established["connection_id"], anonymous.established["connection_id"]

    async def listed(query: str = "") -> str:
        response = await client.get(CONNECTIONS + query)
        assert response.status_code == 200
        return response.content.decode()

    page = await listed()
    assert game_id in page and anonymous_id in page and "(anonymous)" in page
    page = await listed("?endpoint__exact=game")
    assert game_id in page and anonymous_id not in page
    page = await listed("?authenticated=no")
    assert anonymous_id in page and game_id not in page
    page = await listed("?authenticated=yes")
    assert game_id in page and anonymous_id not in page
    assert game_id in await listed(f"?instance={runtime.instance_id}")
    assert game_id not in await listed("?instance=elsewhere")
    page = await listed("?q=searchable_hero")
    assert game_id in page and anonymous_id not in page
    page = await listed(f"?q={user.pk}")
    assert game_id in page and anonymous_id not in page
    await game.close()
    await anonymous.close()


async def test_disconnect_action_kicks_authenticated_and_anonymous_connections(fast_registry):
    user = await db(make_user)()
    victim = await connect("/ws/chat", access_token(user))
    anonymous = await connect("/ws/game")
    bystander = await connect("/ws/game")
    await recorded(victim, anonymous, bystander)
    client = await admin_client()
    selected = [victim.established["connection_id"], anonymous.established["connection_id"]]
    response = await client.post(CONNECTIONS, {"action": "disconnect", ACTION_CHECKBOX_NAME: selected}, follow=True)
    assert response.status_code == 200
    assert "Asked 2 connection(s) to close" in response.content.decode()
    for kicked in (victim, anonymous):
        error = await kicked.recv_type("error")
        assert error["code"] == "kicked"
        assert await kicked.expect_close() == 4403
    assert await silent(bystander)
    await bystander.close()


async def test_reconnect_action_closes_with_1001_without_error(fast_registry):
    moving = await connect("/ws/world")
    await recorded(moving)
    client = await admin_client()
    await client.post(
        CONNECTIONS,
        {"action": "reconnect_elsewhere", ACTION_CHECKBOX_NAME: [moving.established["connection_id"]]},
    )
    output = await moving.communicator.receive_output(2)
    assert output == {"type": "websocket.close", "code": 1001}


async def test_staff_without_the_permission_cannot_disconnect(fast_registry):
    target = await connect("/ws/game")
    await recorded(target)
    viewer = await db(make_user)(is_staff=True)
    await db(lambda: viewer.user_permissions.add(Permission.objects.get(codename="view_connection")))()
    client = AsyncClient()
    await client.aforce_login(viewer)
    page = await client.get(CONNECTIONS)
    assert page.status_code == 200 and 'value="disconnect"' not in page.content.decode()
    await client.post(
        CONNECTIONS, {"action": "disconnect", ACTION_CHECKBOX_NAME: [target.established["connection_id"]]}
    )
    assert await silent(target)
    await target.close()


async def test_records_cannot_be_added_or_edited_or_deleted(fast_registry):
    target = await connect("/ws/game")
    await recorded(target)
    client = await admin_client()
    assert (await client.get(CONNECTIONS + "add/")).status_code == 403
    conn_id = target.established["connection_id"]
    detail = await client.get(f"{CONNECTIONS}{conn_id}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert (await client.post(f"{CONNECTIONS}{conn_id}/delete/")).status_code == 403
    assert 'value="delete_selected"' not in (await client.get(CONNECTIONS)).content.decode()
    await target.close()


async def test_players_cannot_use_the_admin():
    client = await admin_client(is_staff=False)
    response = await client.get(CONNECTIONS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- instances and dashboard ---------------------------------------------------------------------


async def test_instances_show_liveness_and_dead_ones_can_be_forgotten(fast_registry):
    runtime = await ensure_runtime()
    client_ws = await connect("/ws/game")
    await recorded(client_ws)
    await db(stale_instance)("ghost-1", connections=2)
    client = await admin_client()
    page = (await client.get(INSTANCES)).content.decode()
    assert runtime.instance_id in page and "ghost-1" in page
    assert ">live<" in page and ">dead<" in page
    response = await client.post(
        INSTANCES, {"action": "forget_dead", ACTION_CHECKBOX_NAME: ["ghost-1", runtime.instance_id]}, follow=True
    )
    text = response.content.decode()
    assert "Removed the records of 1 dead instance(s)" in text and "Left 1 live instance(s) alone" in text
    assert not await db(Instance.objects.filter(id="ghost-1").exists)()
    assert await db(Connection.objects.filter(instance_id="ghost-1").count)() == 0
    assert await db(Instance.objects.filter(id=runtime.instance_id).exists)()
    await client_ws.close()


async def test_dashboard_shows_cluster_counts_per_endpoint_and_instance(fast_registry):
    runtime = await ensure_runtime()
    clients = [await connect("/ws/game"), await connect("/ws/game"), await connect("/ws/world")]
    await recorded(*clients)
    await db(stale_instance)("ghost-2", connections=1)
    client = await admin_client()
    response = await client.get(DASHBOARD)
    assert response.status_code == 200
    overview = response.context["overview"]
    mine = next(row for row in overview.instances if row.id == runtime.instance_id)
    assert mine.state == "live" and mine.by_endpoint["game"] == 2 and mine.by_endpoint["world"] == 1
    ghost = next(row for row in overview.instances if row.id == "ghost-2")
    assert ghost.state == "dead"
    # Dead instances are listed but not counted in the cluster totals.
    assert overview.by_endpoint == {"game": 2, "chat": 0, "combat": 0, "world": 1} and overview.total == 3
    page = response.content.decode()
    assert runtime.instance_id in page and "ghost-2" in page and 'id="rt-cluster-total">3<' in page
    assert (await client.get(INSTANCES)).content.decode().count(DASHBOARD) >= 1
    for ws in clients:
        await ws.close()


async def test_dashboard_announcement_reaches_game_connections(fast_registry):
    game = await connect("/ws/game")
    world = await connect("/ws/world")
    client = await admin_client()
    response = await client.post(DASHBOARD, {"message": "  Restart at noon  ", "level": "warning"}, follow=True)
    assert "Announcement sent" in response.content.decode()
    frame = await game.recv_type("system_announcement")
    assert frame["message"] == "Restart at noon" and frame["level"] == "warning"
    assert await silent(world)
    response = await client.post(DASHBOARD, {"message": "   ", "level": "info"}, follow=True)
    assert "The announcement is empty." in response.content.decode()
    response = await client.post(DASHBOARD, {"message": "x", "level": "loud"}, follow=True)
    assert "level must be one of" in response.content.decode().lower()
    assert await silent(game)
    await game.close()
    await world.close()


async def test_dashboard_needs_staff_and_announcing_needs_the_permission():
    assert (await AsyncClient().get(DASHBOARD)).status_code == 302
    viewer = await db(make_user)(is_staff=True)
    await db(lambda: viewer.user_permissions.add(Permission.objects.get(codename="view_instance")))()
    client = AsyncClient()
    await client.aforce_login(viewer)
    page = await client.get(DASHBOARD)
    assert page.status_code == 200 and 'name="message"' not in page.content.decode()
    assert (await client.post(DASHBOARD, {"message": "hi", "level": "info"})).status_code == 403


# --- commands -----------------------------------------------------------------------------------


async def command(*args: str) -> str:
    out = io.StringIO()
    await sync_to_async(call_command)(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


async def test_announce_command_reaches_every_game_connection():
    game = await connect("/ws/game")
    user = await db(make_user)()
    player = await connect("/ws/game", access_token(user))
    chat = await connect("/ws/chat", access_token(user))
    output = await command("announce", "Server restart in 5 minutes", "--level", "critical")
    assert "critical announcement" in output
    for client in (game, player):
        frame = await client.recv_type("system_announcement")
        assert frame == {
            "type": "system_announcement",
            "message": "Server restart in 5 minutes",
            "level": "critical",
            "timestamp": frame["timestamp"],
            # Numbered by the server when it takes the command's message (docs/protocol.md §12).
            "stream": "game",
            "offset": frame["offset"],
            "epoch": frame["epoch"],
        }
    assert await silent(chat)
    for client in (game, player, chat):
        await client.close()


async def test_announce_command_refuses_bad_input():
    with pytest.raises(CommandError, match="empty"):
        await command("announce", "   ")
    with pytest.raises(CommandError, match="at most 1000"):
        await command("announce", "x" * 1001)
    with pytest.raises(CommandError):
        await command("announce", "hi", "--level", "loud")


@pytest.fixture
def as_another_process(monkeypatch):
    """Make this process look like one without the server (a command's), for the next sends."""
    monkeypatch.setattr(hub_module, "serving", lambda: False)
    return monkeypatch


async def test_announce_from_another_process_goes_through_the_outbox(settings, as_another_process):
    """Embedded mode: a process without the server runtime writes to the outbox; the server
    delivers it (a real separate process is tested in tests/integration/test_ops_outages.py)."""
    settings.WEBSOCKET_OUTBOX_POLL_INTERVAL = 0.1
    game = await connect("/ws/game")  # the server runtime, which polls the outbox
    output = await command("announce", "From a command")
    assert "Queued" in output
    frame = await game.recv_type("system_announcement", timeout=5)
    assert frame["message"] == "From a command"
    assert await db(OutboxMessage.objects.count)() == 0
    await game.close()


async def test_outbox_drops_what_is_too_old_or_older_than_the_server(settings, as_another_process):
    settings.WEBSOCKET_OUTBOX_POLL_INTERVAL = 0.1
    await command("announce", "Before the server started")
    game = await connect("/ws/game")
    await command("announce", "Too old")
    await db(
        lambda: OutboxMessage.objects.filter(message__contains="Too old").update(
            created_at=timezone.now() - timedelta(minutes=5)
        )
    )()
    await command("announce", "Fresh")
    frame = await game.recv_type("system_announcement", timeout=5)
    assert frame["message"] == "Fresh"
    assert await silent(game)
    assert not await db(OutboxMessage.objects.exists)()
    await game.close()


async def test_ws_stats_lists_instances_liveness_and_connections(fast_registry):
    runtime = await ensure_runtime()
    clients = [await connect("/ws/game"), await connect("/ws/world")]
    await recorded(*clients)
    await db(stale_instance)("ghost-3", connections=1)
    table = await command("ws_stats")
    lines = table.splitlines()
    assert lines[0].startswith("2 instance(s): 1 live or draining, 1 dead")
    header = next(line for line in lines if line.startswith("INSTANCE"))
    assert header.split()[:3] == ["INSTANCE", "STATE", "LAST"] and "/ws/game" in header
    mine = next(line for line in lines if line.startswith(runtime.instance_id)).split()
    assert mine[1] == "live" and mine[-5:] == ["1", "0", "0", "1", "2"]
    ghost = next(line for line in lines if line.startswith("ghost-3")).split()
    assert ghost[1] == "dead" and ghost[-1] == "1"
    assert lines[-1].split()[-5:] == ["1", "0", "0", "1", "2"]  # cluster = live instances
    data = json.loads(await command("ws_stats", "--json"))
    assert data["total"] == 2 and data["by_endpoint"]["world"] == 1
    states = {row["id"]: row["state"] for row in data["instances"]}
    assert states == {runtime.instance_id: "live", "ghost-3": "dead"}
    for client in clients:
        await client.close()


async def test_ws_stats_fails_cleanly_when_the_database_does(monkeypatch):

    def broken():
        raise RuntimeError("database is down")

    monkeypatch.setattr(monitoring, "cluster_overview", broken)
    with pytest.raises(CommandError, match="Cannot read the registry"):
        await command("ws_stats")


async def test_cleanup_connections_dry_run_then_cleanup(monkeypatch):
    forgotten: list[str] = []
    install = boot.install_features

    def install_with_probe(runtime):
        install(runtime)

        async def hook(instance_id: str) -> None:
            forgotten.append(instance_id)

        runtime.on_instance_dead(hook)

    monkeypatch.setattr(boot, "install_features", install_with_probe)
    await db(stale_instance)("ghost-4", connections=2)
    # Rows without an instance row count as leftovers once they are stale (fresh ones may be a
    # live instance that is about to re-create its row).
    stale = timezone.now() - timedelta(hours=1)
    await db(Connection.objects.create)(id="orphan-c0", instance_id="vanished", endpoint="world", last_seen=stale)
    await db(Connection.objects.create)(id="orphan-c1", instance_id="recreating", endpoint="world")
    await db(lambda: Instance.objects.create(id="alive-1", last_seen=timezone.now()))()

    output = await command("cleanup_connections", "--dry-run")
    assert "Would remove ghost-4: 2 connection records" in output
    assert "Would remove vanished: 1 connection records" in output and "without an instance" in output
    assert "alive-1" not in output and "recreating" not in output
    assert await db(Connection.objects.count)() == 4 and forgotten == []

    output = await command("cleanup_connections")
    assert "Removed the records of 2 dead instance(s)." in output
    assert sorted(forgotten) == ["ghost-4", "vanished"]  # the features' own cleanup ran too
    assert await db(lambda: list(Connection.objects.values_list("id", flat=True)))() == ["orphan-c1"]
    assert sorted(await db(lambda: list(Instance.objects.values_list("id", flat=True)))()) == ["alive-1"]
    assert "No dead instances" in await command("cleanup_connections")


async def test_cleanup_connections_reports_failures(monkeypatch):

    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(operations, "find_dead_instances", broken)
    with pytest.raises(CommandError, match="Cleanup failed"):
        await command("cleanup_connections")


def test_every_command_has_help():
    for name in ("announce", "cleanup_connections", "ws_stats"):
        with pytest.raises(SystemExit) as exit_info:
            call_command(name, "--help", stdout=io.StringIO())
        assert exit_info.value.code == 0


# --- when the channel layer fails ------------------------------------------------------------------


@pytest.fixture
def hanging_layer(monkeypatch):

    async def hang(self, group, message):
        await asyncio.sleep(3600)

    monkeypatch.setattr(EmbeddedChannelLayer, "group_send", hang)
    monkeypatch.setattr(operations, "OPERATION_TIMEOUT", 0.3)


async def test_admin_actions_report_a_hanging_layer_instead_of_hanging(fast_registry, hanging_layer):
    target = await connect("/ws/game")
    await recorded(target)
    client = await admin_client()
    response = await client.post(
        CONNECTIONS, {"action": "disconnect", ACTION_CHECKBOX_NAME: [target.established["connection_id"]]}, follow=True
    )
    assert "channel layer did not take the request in time" in response.content.decode().lower()
    response = await client.post(DASHBOARD, {"message": "hello", "level": "info"}, follow=True)
    assert "channel layer unavailable" in response.content.decode().lower()
    await target.close()


async def test_announce_command_exits_1_when_the_layer_fails(monkeypatch, hanging_layer):
    with pytest.raises(CommandError, match=r"did not answer within 0\.2 s") as failure:
        await command("announce", "hello", "--timeout", "0.2")
    assert failure.value.returncode == 1

    async def refuse(self, group, message):
        raise ConnectionError("layer down")

    monkeypatch.setattr(EmbeddedChannelLayer, "group_send", refuse)
    with pytest.raises(CommandError, match="refused") as failure:
        await command("announce", "hello")
    assert failure.value.returncode == 1


# --- membership edits in the admin ------------------------------------------------------------


async def test_guild_and_party_edited_in_the_admin_move_open_connections():

    guild = await db(Guild.objects.create)(name="Edited In")
    party = await db(Party.objects.create)(name="Edited Party")
    member = await db(make_user)(guild=guild, party=party)
    player = await db(make_user)()
    listening = await connect("/ws/chat", access_token(player))
    speaking = await connect("/ws/chat", access_token(member))
    client = await admin_client()
    form = {
        "username": player.username,
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "is_active": "on",
        "guild": str(guild.pk),
        "party": str(party.pk),
    }
    response = await client.post(f"/admin/accounts/user/{player.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    await asyncio.sleep(0.3)  # the membership control reaches the connection
    for channel in ("guild", "party"):
        await speaking.send({"type": "chat_message", "channel": channel, "content": f"hello {channel}"})
        assert (await listening.recv_type("chat_message"))["content"] == f"hello {channel}"
    # Out again: the party is left, and its messages no longer arrive.
    response = await client.post(f"/admin/accounts/user/{player.pk}/change/", {**form, "party": ""})
    assert response.status_code == 302
    await asyncio.sleep(0.3)
    await speaking.send({"type": "chat_message", "channel": "party", "content": "members only"})
    assert await silent(listening)
    await listening.close()
    await speaking.close()


async def test_deleting_a_guild_in_the_admin_moves_its_members_out():

    guild = await db(Guild.objects.create)(name="Doomed")
    member = await db(make_user)(guild=guild)
    chat = await connect("/ws/chat", access_token(member))
    client = await admin_client()
    response = await client.post(f"/admin/accounts/guild/{guild.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    await asyncio.sleep(0.3)
    error = await chat.request({"type": "chat_message", "channel": "guild", "content": "anyone?"})
    assert error["code"] == "forbidden"  # the connection knows it is in no guild any more
    await chat.close()


async def test_a_personal_event_from_another_process_is_delivered_live_or_kept(settings, monkeypatch):
    """Embedded mode: only the server knows who is connected, so a shell's personal event goes
    through the outbox and the server delivers it live, or keeps it for an offline user (§9)."""

    settings.WEBSOCKET_OUTBOX_POLL_INTERVAL = 0.1
    online, offline = await db(make_user)(), await db(make_user)()
    game = await connect("/ws/game", access_token(online))  # the server runtime polls the outbox
    with monkeypatch.context() as as_a_shell:
        as_a_shell.setattr(hub_module, "serving", lambda: False)
        assert await achievement_grant(user_id=online.pk, achievement="first_blood") == "queued"
        assert await achievement_grant(user_id=offline.pk, achievement="first_blood") == "queued"
        # Durable: kept in the outbox however long the server takes to read it.
        await db(OutboxMessage.objects.update)(created_at=timezone.now() - timedelta(minutes=5))
    frame = await game.recv_type("achievement", timeout=5)
    assert frame["achievement"] == "first_blood"
    for _ in range(50):
        if await db(PendingDelivery.objects.filter(user=offline).exists)():
            break
        await asyncio.sleep(0.1)
    later = await connect("/ws/game", access_token(offline))
    assert (await later.recv_type("achievement"))["achievement"] == "first_blood"
    assert not await db(PendingDelivery.objects.filter(user=online).exists)()
    await game.close()
    await later.close()
