"""docs/protocol.md §4 on the in-process layer: presence, set_status, achievements, announcements, game state."""

from __future__ import annotations

import pytest

from accounts.models import Guild, Party
from realtime.features import game, presence, publish
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user
from tests.support.world import create_default_zones

pytestmark = pytest.mark.django_db(transaction=True)


async def user(**fields):
    return await db(make_user)(**fields)


async def on(path, member):
    return await connect(path, access_token(member))


async def frames(client, quiet=0.3):
    got = []
    while not await client.nothing(quiet):
        frame = await client.recv()
        if frame["type"] != "ping":
            got.append(frame)
    return got


def of_type(received, frame_type):
    return [f for f in received if f["type"] == frame_type]


@pytest.fixture
async def guild():
    return await db(Guild.objects.create)(name="Knights")


@pytest.fixture
async def party():
    return await db(Party.objects.create)(name="Raid")


# --- presence ----------------------------------------------------------------------------------


async def test_online_on_the_first_connection_anywhere_and_offline_after_the_last(guild):
    watcher_user, mover = await user(guild=guild), await user(guild=guild)
    watcher = await on("/ws/game", watcher_user)
    await frames(watcher)  # its own online status
    world_conn = await on("/ws/world", mover)
    online = await watcher.recv_type("player_status")
    assert {k: online[k] for k in ("user_id", "username", "status")} == {
        "user_id": str(mover.pk),
        "username": mover.username,
        "status": "online",
    }
    assert online["timestamp"].endswith("Z")
    game_conn = await on("/ws/game", mover)
    assert of_type(await frames(watcher), "player_status") == []
    await world_conn.close()
    assert of_type(await frames(watcher), "player_status") == []
    await game_conn.close()
    offline = await watcher.recv_type("player_status")
    assert (offline["user_id"], offline["status"]) == (str(mover.pk), "offline")


async def test_presence_is_not_sent_to_strangers_or_to_other_endpoints(guild):
    stranger = await on("/ws/game", await user())
    await frames(stranger)  # its own online status
    member_chat = await on("/ws/chat", await user(guild=guild))
    await on("/ws/world", await user(guild=guild))
    assert of_type(await frames(stranger), "player_status") == []
    assert of_type(await frames(member_chat), "player_status") == []


# --- set_status ----------------------------------------------------------------------------------


async def test_set_status_reaches_guild_party_and_own_game_connections_once(guild, party):
    me = await user(guild=guild, party=party)
    guildmate = await on("/ws/game", await user(guild=guild))
    partymate = await on("/ws/game", await user(party=party))
    both = await on("/ws/game", await user(guild=guild, party=party))
    stranger = await on("/ws/game", await user())
    mine = await on("/ws/game", me)
    my_other = await on("/ws/game", me)
    my_chat = await on("/ws/chat", me)
    for client in (guildmate, partymate, both, stranger, mine, my_other, my_chat):
        await frames(client)
    await mine.send({"type": "set_status", "status": "away", "id": "s1"})
    received = {client: await frames(client) for client in (guildmate, partymate, both, mine, my_other)}
    assert of_type(received[mine], "ack") == [{"type": "ack", "id": "s1"}]
    for got in received.values():
        statuses = of_type(got, "player_status")
        assert [(s["user_id"], s["username"], s["status"]) for s in statuses] == [(str(me.pk), me.username, "away")]
    assert await stranger.nothing() and await my_chat.nothing()

    assert await presence.get_status(str(me.pk)) == "away"
    await mine.send({"type": "set_status", "status": "online"})  # no id: no ack
    assert [f["status"] for f in of_type(await frames(mine), "player_status")] == ["online"]
    assert await presence.get_status(str(me.pk)) == "online"


async def test_set_status_without_guild_or_party_reaches_own_connections():
    me = await user()
    mine, my_other = await on("/ws/game", me), await on("/ws/game", me)
    await frames(mine)
    await frames(my_other)
    await mine.send({"type": "set_status", "status": "busy"})
    for client in (mine, my_other):
        assert [f["status"] for f in of_type(await frames(client), "player_status")] == ["busy"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"status": "sleeping"}, "invalid_message"),
        ({"status": "offline"}, "invalid_message"),
        ({"status": 1}, "invalid_message"),
        ({}, "invalid_message"),
    ],
)
async def test_bad_set_status(frame, code):
    client = await on("/ws/game", await user())
    reply = await client.request({"type": "set_status", **frame})
    assert reply["type"] == "error" and reply["code"] == code


async def test_anonymous_may_not_set_status():
    client = await connect("/ws/game")
    reply = await client.request({"type": "set_status", "status": "away"})
    assert reply["code"] == "authentication_required"


# --- achievements --------------------------------------------------------------------------------


async def test_achievement_reaches_the_user_and_the_guild_once_each(guild):
    me = await user(guild=guild)
    mine, my_other = await on("/ws/game", me), await on("/ws/game", me)
    guildmate = await on("/ws/game", await user(guild=guild))
    stranger = await on("/ws/game", await user())
    anonymous = await connect("/ws/game")
    for client in (mine, my_other, guildmate, stranger, anonymous):
        await frames(client)
    assert await game.achievement_grant(user_id=me.pk, achievement="first_kill") == "live"
    for client in (mine, my_other, guildmate):
        [achievement] = of_type(await frames(client), "achievement")
        assert {k: achievement[k] for k in ("user_id", "username", "achievement")} == {
            "user_id": str(me.pk),
            "username": me.username,
            "achievement": "first_kill",
        }
    assert await stranger.nothing() and await anonymous.nothing()


async def test_achievement_for_an_absent_user_waits_for_their_next_game_connection(guild):
    me = await user(guild=guild)
    guildmate = await on("/ws/game", await user(guild=guild))
    await frames(guildmate)
    chat_only = await on("/ws/chat", me)  # chat does not carry achievements
    assert await game.achievement_grant(user_id=str(me.pk), achievement="explorer") == "stored"
    assert of_type(await frames(guildmate), "achievement")[0]["achievement"] == "explorer"
    assert await chat_only.nothing()
    later = await on("/ws/game", me)
    assert (await later.recv())["achievement"] == "explorer"  # first, right after connection_established
    again = await on("/ws/game", me)
    assert of_type(await frames(again), "achievement") == []


async def test_achievement_api_checks_its_input():
    me = await user()
    with pytest.raises(LookupError):
        await game.achievement_grant(user_id="6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", achievement="x")
    with pytest.raises(ValueError):
        await game.achievement_grant(user_id="not-a-uuid", achievement="x")
    with pytest.raises(ValueError):
        await game.achievement_grant(user_id=me.pk, achievement="   ")


# --- announcements and game state ------------------------------------------------------------


async def test_announcements_and_game_state_reach_every_game_connection():
    anonymous = await connect("/ws/game")
    member = await on("/ws/game", await user())
    world_conn = await connect("/ws/world")
    await frames(member)
    await game.announcement_send(message="Server restart in 5 minutes", level="warning")
    await game.game_state_set(key="season", value={"name": "winter", "week": 3})
    for client in (anonymous, member):
        announcement, state = await frames(client)
        assert {k: announcement[k] for k in ("type", "message", "level")} == {
            "type": "system_announcement",
            "message": "Server restart in 5 minutes",
            "level": "warning",
        }
        assert (state["type"], state["key"], state["value"]) == ("game_state", "season", {"name": "winter", "week": 3})
        assert announcement["timestamp"].endswith("Z") and state["timestamp"].endswith("Z")
    assert await world_conn.nothing()


@pytest.mark.parametrize(
    "kwargs",
    [{"message": "hi", "level": "fatal"}, {"message": ""}, {"message": "  "}, {"message": "x" * 1001}, {"message": 5}],
)
async def test_bad_announcements_are_refused(kwargs):
    anonymous = await connect("/ws/game")
    with pytest.raises(ValueError):
        await game.announcement_send(**kwargs)
    assert await anonymous.nothing()


async def test_bad_game_state_is_refused():
    with pytest.raises(ValueError):
        await game.game_state_set(key="", value=1)
    with pytest.raises(ValueError):
        await game.game_state_set(key=None, value=1)


def test_sync_twins_work_from_sync_code(transactional_db):
    game.announcement_send_sync(message="from a view")
    with pytest.raises(ValueError):
        game.announcement_send_sync(message="bad", level="loud")


# --- the publish route applies the same rules ------------------------------------------------


async def test_publish_checks_game_and_world_events():
    with pytest.raises(publish.PublishError, match="level"):
        await publish.publish("game", {"type": "system_announcement", "message": "x", "level": "loud"})
    with pytest.raises(publish.PublishError):
        await publish.publish("game", {"type": "game_state", "value": 1})
    with pytest.raises(publish.PublishError, match="zone"):
        await publish.publish("world", {"type": "world_event", "event": "x", "zone": "dark_forest"})
    with pytest.raises(publish.PublishError, match="zone"):
        await publish.publish("zone:atlantis", {"type": "world_event", "event": "x"})
    other = await user()
    with pytest.raises(publish.PublishError, match="user_id"):
        await publish.publish(
            f"user:{(await user()).pk}", {"type": "achievement", "user_id": str(other.pk), "achievement": "x"}
        )
    # Types that are not the game's or the world's pass as they are.
    assert await publish.publish("game", {"type": "custom_thing", "anything": [1, 2]}) == "live"


async def test_published_achievement_also_reaches_the_guild(guild):
    me = await user(guild=guild)
    guildmate = await on("/ws/game", await user(guild=guild))
    mine = await on("/ws/game", me)
    await frames(guildmate)
    await frames(mine)
    assert await publish.publish(f"user:{me.pk}", {"type": "achievement", "achievement": "dragon_slayer"}) == "live"
    for client in (mine, guildmate):
        [achievement] = of_type(await frames(client), "achievement")
        assert (achievement["user_id"], achievement["achievement"]) == (str(me.pk), "dragon_slayer")


async def test_published_world_event_to_a_zone_gets_the_zone_filled_in():

    await db(create_default_zones)()
    watcher = await connect("/ws/world")
    await watcher.request({"type": "zone_change", "zone": "dark_forest"})
    await publish.publish("zone:dark_forest", {"type": "world_event", "event": "dragon_spawn", "message": "Run"})
    event = await watcher.recv_type("world_event")
    assert (event["zone"], event["event"], event["message"]) == ("dark_forest", "dragon_spawn", "Run")
