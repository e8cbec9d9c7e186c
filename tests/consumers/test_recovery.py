"""Stream positions and `resume` (docs/protocol.md §12), in one process with the in-memory log:
offsets and epochs on every stream frame, positions in `connection_established`, exact replay of
what was missed, every reason a stream cannot be recovered, and live frames that arrive while a
replay runs following it. Across instances, instance death and Redis restarts:
tests/integration/test_recovery.py."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.contrib.auth import get_user_model

from accounts.models import Guild
from realtime.features import game
from realtime.features.combat import referee
from realtime.features.world import events as world_events
from realtime.models import CombatLogEntry, CombatSession
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.faults import until
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


async def chat_client(user):
    return await connect("/ws/chat", access_token(user))


async def say(client, content, channel="global"):
    """Without an `id`: no ack to wait for, so no frame is skipped while waiting for one."""
    await client.send({"type": "chat_message", "channel": channel, "content": content})


async def received(client, frame_type, n, timeout=5.0):
    return [await client.recv_type(frame_type, timeout) for _ in range(n)]


def position(frame):
    return {"offset": frame["offset"], "epoch": frame["epoch"]}


async def test_stream_frames_carry_gap_free_offsets_and_connection_established_says_where_streams_stand():
    alice, bob = await db(make_user)(), await db(make_user)()
    a = await chat_client(alice)
    assert a.established["protocol"] == "1.1"
    start = a.established["streams"]["chat:global"]
    for n in range(3):
        await say(a, f"m{n}")
    frames = await received(a, "chat_message", 3)
    assert [f["offset"] for f in frames] == [start["offset"] + 1, start["offset"] + 2, start["offset"] + 3]
    assert {f["epoch"] for f in frames} == {start["epoch"]} and {f["stream"] for f in frames} == {"chat:global"}
    b = await chat_client(bob)
    assert b.established["streams"]["chat:global"] == {"offset": start["offset"] + 3, "epoch": start["epoch"]}
    # Each endpoint carries its own streams; /ws/game's is `game`, for anonymous watchers too.
    watcher = await connect("/ws/game")
    assert set(watcher.established["streams"]) == {"game"}
    await game.announcement_send(message="hello")
    announcement = await watcher.recv_type("system_announcement")
    assert (announcement["stream"], announcement["offset"]) == (
        "game",
        watcher.established["streams"]["game"]["offset"] + 1,
    )
    for client in (a, b, watcher):
        await client.close()


async def test_resume_replays_exactly_what_was_missed_in_order():
    alice, bob = await db(make_user)(), await db(make_user)()
    a = await chat_client(alice)
    b = await chat_client(bob)
    await say(a, "seen")
    last_seen = position(await b.recv_type("chat_message"))
    await b.close()
    for n in range(4):
        await say(a, f"missed {n}")
    await received(a, "chat_message", 5)  # published ("seen" and the four) before bob is back
    b = await chat_client(bob)
    assert b.established["streams"]["chat:global"]["offset"] == last_seen["offset"] + 4
    resumed_reply = await b.request({"type": "resume", "streams": {"chat:global": last_seen}, "id": "r1"})
    replayed = [f for f in b.seen if f["type"] == "chat_message"]
    assert [f["content"] for f in replayed] == [f"missed {n}" for n in range(4)]
    assert [f["offset"] for f in replayed] == [last_seen["offset"] + n for n in range(1, 5)]
    assert resumed_reply == {
        "type": "resumed",
        "id": "r1",
        "streams": {
            "chat:global": {
                "recovered": True,
                "missed": 4,
                "offset": last_seen["offset"] + 4,
                "epoch": last_seen["epoch"],
            }
        },
        "timestamp": resumed_reply["timestamp"],
    }
    # Nothing comes twice: the connection's own live frames start after the replay.
    await say(a, "live")
    assert (await b.recv_type("chat_message"))["offset"] == last_seen["offset"] + 5
    await a.close()
    await b.close()


async def test_live_frames_that_arrive_before_the_resume_follow_the_replay(settings):
    settings.WEBSOCKET_RESUME_WINDOW = 5  # the hold, long enough for this test's pace
    alice, bob = await db(make_user)(), await db(make_user)()
    a = await chat_client(alice)
    b = await chat_client(bob)
    await b.request({"type": "ping"})  # not resuming: b's live frames flow at once
    await say(a, "seen")
    last_seen = position(await b.recv_type("chat_message"))
    await b.close()
    await say(a, "missed")
    b = await chat_client(bob)
    await say(a, "live, before the resume")  # held for b: it may still ask for the past
    assert await b.nothing(0.2)
    reply = await b.request({"type": "resume", "streams": {"chat:global": last_seen}})
    contents = [f["content"] for f in b.seen if f["type"] == "chat_message"]
    assert contents == ["missed", "live, before the resume"]
    assert reply["streams"]["chat:global"]["missed"] == 1
    await a.close()
    await b.close()


async def test_a_client_that_does_not_resume_gets_live_frames_after_the_window(settings):
    settings.WEBSOCKET_RESUME_WINDOW = 0.3
    alice, bob = await db(make_user)(), await db(make_user)()
    a = await chat_client(alice)
    b = await chat_client(bob)
    await say(a, "to everyone")
    frame = await b.recv_type("chat_message", timeout=2)
    assert frame["content"] == "to everyone"
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("streams", "reason"),
    [
        ({"chat:global": {"offset": 1, "epoch": "not-the-epoch"}}, "epoch_changed"),
        ({"chat:nowhere": {"offset": 0, "epoch": "x"}}, "unknown_stream"),
        ({"game": {"offset": 0, "epoch": "x"}}, "unknown_stream"),  # /ws/game's stream, not chat's
        ({f"chat:guild:{uuid.uuid4()}": {"offset": 0, "epoch": "x"}}, "forbidden"),
        ({f"combat:{uuid.uuid4()}": {"offset": 0, "epoch": "x"}}, "unknown_stream"),
    ],
)
async def test_streams_that_cannot_be_recovered_say_why(streams, reason):
    alice = await db(make_user)()
    a = await chat_client(alice)
    reply = await a.request({"type": "resume", "streams": streams})
    (entry,) = reply["streams"].values()
    assert entry["recovered"] is False and entry["reason"] == reason
    assert set(entry) == {"recovered", "reason", "offset", "epoch"}
    assert not [f for f in a.seen if f["type"] == "chat_message"]  # nothing replayed
    await a.close()


async def test_a_stream_whose_frames_are_gone_is_too_old(settings):
    settings.RECOVERY_HISTORY_SIZE = 3
    alice, bob = await db(make_user)(), await db(make_user)()
    a = await chat_client(alice)
    b = await chat_client(bob)
    await say(a, "seen")
    last_seen = position(await b.recv_type("chat_message"))
    await b.close()
    for n in range(5):  # more than the stream keeps
        await say(a, f"missed {n}")
    await received(a, "chat_message", 6)
    b = await chat_client(bob)
    reply = await b.request({"type": "resume", "streams": {"chat:global": last_seen}})
    entry = reply["streams"]["chat:global"]
    assert entry == {"recovered": False, "reason": "too_old", **b.established["streams"]["chat:global"]}
    assert not [f for f in b.seen if f["type"] == "chat_message"]
    await a.close()
    await b.close()


async def test_frames_older_than_the_retention_are_too_old(settings):
    settings.RECOVERY_HISTORY_TTL = 0.2
    alice, bob = await db(make_user)(), await db(make_user)()
    a, b = await chat_client(alice), await chat_client(bob)
    await say(a, "seen")
    last_seen = position(await b.recv_type("chat_message"))
    await b.close()
    await say(a, "missed")
    await asyncio.sleep(0.4)
    b = await chat_client(bob)
    reply = await b.request({"type": "resume", "streams": {"chat:global": last_seen}})
    assert reply["streams"]["chat:global"]["reason"] == "too_old"
    await a.close()
    await b.close()


async def test_guild_chat_is_recovered_by_members_only():
    guild = await db(Guild.objects.create)(name="Keepers", open=True)
    member, stranger = await db(make_user)(guild=guild), await db(make_user)()
    speaker = await db(make_user)(guild=guild)
    s = await chat_client(speaker)
    m = await chat_client(member)
    stream = f"chat:guild:{guild.pk}"
    start = m.established["streams"][stream]
    await m.close()
    await say(s, "for the guild", channel="guild")
    m = await chat_client(member)
    reply = await m.request({"type": "resume", "streams": {stream: start}})
    assert reply["streams"][stream]["recovered"] is True
    assert [f["content"] for f in m.seen if f["type"] == "chat_message"] == ["for the guild"]
    outsider = await chat_client(stranger)
    refused = await outsider.request({"type": "resume", "streams": {stream: start}})
    assert refused["streams"][stream] == {"recovered": False, "reason": "forbidden", "offset": 0, "epoch": ""}
    for client in (s, m, outsider):
        await client.close()


async def test_world_events_of_a_zone_are_recovered_and_zone_changed_says_where_the_stream_is():
    watcher = await connect("/ws/world")
    changed = await watcher.request({"type": "zone_change", "zone": "dark_forest", "x": 10, "y": 10})
    start = changed["streams"]["world:dark_forest"]
    await watcher.close()
    await world_events.world_event_send(event="dragon_spawn", zone="dark_forest", message="A dragon!")
    await world_events.world_event_send(event="eclipse", message="Everywhere")  # zone null: every zone's stream
    back = await connect("/ws/world")
    reply = await back.request({"type": "resume", "streams": {"world:dark_forest": start}})
    assert reply["streams"]["world:dark_forest"]["missed"] == 2
    replayed = [f for f in back.seen if f["type"] == "world_event"]
    assert [(f["event"], f["offset"]) for f in replayed] == [
        ("dragon_spawn", start["offset"] + 1),
        ("eclipse", start["offset"] + 2),
    ]
    await back.close()


async def test_a_fights_frames_are_recovered_after_turn_timeouts(settings, monkeypatch):
    settings.COMBAT_TURN_TIMEOUT = 0.3
    # Unattended turns would end the fight after three; here it stays on however late the
    # player comes back on a busy machine.
    monkeypatch.setattr(referee, "ABANDON_AFTER_TIMEOUTS", 1000)
    user = await db(make_user)()
    client = await connect("/ws/combat", access_token(user))
    state = await client.request({"type": "combat_start", "monsters": ["troll"]})
    stream = state["stream"]
    seen = position(state)
    await client.close()
    # The player is away: the turn times out, the monster acts, the next turn times out.
    timeouts = db(CombatLogEntry.objects.filter(session_id=state["combat_session_id"], kind="timeout").count)

    async def two_turns_timed_out() -> bool:
        return await timeouts() >= 2

    await until(two_turns_timed_out, timeout=10, every=0.05, what="two unattended turns")
    back = await connect("/ws/combat", access_token(user))
    assert stream in back.established["streams"]
    reply = await back.request({"type": "resume", "streams": {stream: seen}})
    entry = reply["streams"][stream]
    assert entry["recovered"] is True and entry["missed"] >= 3
    replayed = [f for f in back.seen if f.get("stream") == stream]
    assert [f["offset"] for f in replayed] == list(range(seen["offset"] + 1, seen["offset"] + 1 + entry["missed"]))
    assert "combat_timeout" in {f["type"] for f in replayed}
    # Someone else may not read the fight's stream.
    other = await connect("/ws/combat", access_token(await db(make_user)()))
    refused = await other.request({"type": "resume", "streams": {stream: seen}})
    assert refused["streams"][stream]["reason"] == "forbidden"
    session = await db(CombatSession.objects.get)(pk=state["combat_session_id"])
    assert session.turn > state["round"]
    await back.close()
    await other.close()
