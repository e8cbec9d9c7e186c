"""/ws/chat on the in-process layer (docs/protocol.md §5, §9): audiences, content rules, typing, history,
moderation, the per-user rate limit, offline private delivery, and what a message costs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone

from accounts import services as accounts
from accounts.models import Guild, Party, User
from realtime.features import chat as chat_service
from realtime.models import ChatMessage, ModerationAction
from realtime.models.chat import PERMANENT
from realtime.protocol import CloseCode
from tests.support.communicator import STREAM_KEYS, connect, unpositioned
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_KEYS = {"type", "message_id", "user", "user_id", "content", "channel", "to", "timestamp"}
EVENT_KEYS = {"type", "action", "user_id", "message_id", "moderator", "reason", "until", "timestamp"}


async def player(**fields):
    return await db(make_user)(**fields)


async def chat(user):
    return await connect("/ws/chat", access_token(user))


async def send(client, **frame):
    await client.send({"type": "chat_message", **frame})


async def error_for(client, frame):
    reply = await client.request(frame)
    assert reply["type"] == "error", reply
    return reply


async def none_of(client, frame_type, timeout=0.3):
    """True when no frame of `frame_type` arrives (other frames, e.g. presence, are skipped)."""
    while not await client.nothing(timeout):
        if (await client.recv()).get("type") == frame_type:
            return False
    return True


async def close_all(*clients):
    for client in clients:
        await client.close()


async def guild_of(*users, name=None):
    guild = await db(Guild.objects.create)(name=name or f"g{uuid.uuid4().hex[:8]}")
    for user in users:
        await db(User.objects.filter(pk=user.pk).update)(guild=guild)
    return guild


async def party_of(*users):
    party = await db(Party.objects.create)(name="p")
    for user in users:
        await db(User.objects.filter(pk=user.pk).update)(party=party)
    return party


# --- audiences -------------------------------------------------------------------------------


async def test_global_message_reaches_every_chat_connection_exactly_as_specified():
    alice, bob, carol = await player(username="alice"), await player(), await player()
    a, b, c = await chat(alice), await chat(bob), await chat(carol)
    await send(a, channel="global", content="  Hello world!  ")
    frames = [await client.recv_type("chat_message") for client in (a, b, c)]
    assert frames[0] == frames[1] == frames[2]
    frame = frames[0]
    assert set(frame) == FRAME_KEYS | STREAM_KEYS
    assert frame["stream"] == "chat:global" and frame["offset"] >= 1
    assert frame["user"] == "alice" and frame["user_id"] == str(alice.pk)
    assert frame["content"] == "Hello world!" and frame["channel"] == "global" and frame["to"] is None
    assert uuid.UUID(frame["message_id"]) and frame["timestamp"].endswith("Z")
    await close_all(a, b, c)


async def test_message_with_id_gets_an_ack_naming_the_message():
    alice = await player()
    a = await chat(alice)
    await a.send({"type": "chat_message", "channel": "global", "content": "hi", "id": "m1"})
    first, second = await a.recv(), await a.recv()  # the broadcast and the ack, in either order
    ack, delivered = (first, second) if first["type"] == "ack" else (second, first)
    assert ack["type"] == "ack" and ack["id"] == "m1" and "id" not in delivered
    assert delivered["message_id"] == ack["message_id"] and delivered["timestamp"] == ack["timestamp"]
    await a.close()


async def test_guild_messages_reach_members_only():
    alice, bob, outsider, other_guild = await player(), await player(), await player(), await player()
    await guild_of(alice, bob)
    await guild_of(other_guild)
    a, b, o, g = await chat(alice), await chat(bob), await chat(outsider), await chat(other_guild)
    await send(a, channel="guild", content="guild only")
    assert (await b.recv_type("chat_message"))["channel"] == "guild"
    assert (await a.recv_type("chat_message"))["content"] == "guild only"
    assert await o.nothing(0.3) and await g.nothing(0.1)
    await close_all(a, b, o, g)


async def test_party_messages_reach_members_only():
    alice, bob, outsider = await player(), await player(), await player()
    await party_of(alice, bob)
    a, b, o = await chat(alice), await chat(bob), await chat(outsider)
    await send(b, channel="party", content="party time")
    assert (await a.recv_type("chat_message"))["content"] == "party time"
    assert (await b.recv_type("chat_message"))["channel"] == "party"
    assert await o.nothing(0.3)
    await close_all(a, b, o)


@pytest.mark.parametrize("channel", ["guild", "party"])
async def test_non_members_are_forbidden(channel):
    loner = await player()
    client = await chat(loner)
    error = await error_for(client, {"type": "chat_message", "channel": channel, "content": "hi"})
    assert error["code"] == "forbidden" and error["id"] == "req-1"
    assert await db(ChatMessage.objects.count)() == 0
    await client.close()


async def test_guild_membership_changes_apply_live():
    alice, bob = await player(), await player()
    a, b = await chat(alice), await chat(bob)
    guild = await db(accounts.guild_create)(user=alice, name="Knights", open=True)
    await db(accounts.guild_join)(user=bob, guild_id=guild.pk)
    await asyncio.sleep(0.3)  # the membership control reaches the connections
    await send(a, channel="guild", content="welcome")
    assert (await b.recv_type("chat_message"))["content"] == "welcome"
    assert (await a.recv_type("chat_message"))["content"] == "welcome"
    await db(accounts.guild_leave)(user=bob)
    await asyncio.sleep(0.3)
    await send(a, channel="guild", content="after you left")
    assert (await a.recv_type("chat_message"))["content"] == "after you left"
    assert await b.nothing(0.3)
    assert (await error_for(b, {"type": "chat_message", "channel": "guild", "content": "x"}))["code"] == "forbidden"
    await close_all(a, b)


async def test_private_message_reaches_both_users_every_connection_and_nobody_else():
    alice, bob, carol = await player(), await player(), await player()
    a1, a2, b1, b2, c = await chat(alice), await chat(alice), await chat(bob), await chat(bob), await chat(carol)
    bob_game = await connect("/ws/game", access_token(bob))
    await send(a1, channel="private", content="psst", to=str(bob.pk).upper())
    frames = [await client.recv_type("chat_message") for client in (a1, a2, b1, b2)]
    assert all(frame == frames[0] for frame in frames)
    assert frames[0]["channel"] == "private" and frames[0]["to"] == str(bob.pk)
    assert await c.nothing(0.3)
    assert await none_of(bob_game, "chat_message")
    await close_all(a1, a2, b1, b2, c, bob_game)


async def test_private_message_to_unknown_or_inactive_user_is_not_found():
    alice = await player()
    inactive = await player(is_active=False)
    a = await chat(alice)
    for target in (str(uuid.uuid4()), str(inactive.pk)):
        error = await error_for(a, {"type": "chat_message", "channel": "private", "content": "hi", "to": target})
        assert error["code"] == "not_found"
    assert await db(ChatMessage.objects.count)() == 0
    await a.close()


async def test_offline_private_message_is_delivered_once_after_connection_established():
    alice, bob = await player(), await player()
    a = await chat(alice)
    bob_game = await connect("/ws/game", access_token(bob))  # online, but not on an endpoint carrying chat
    await send(a, channel="private", content="while you were away", to=str(bob.pk))
    sent = await a.recv_type("chat_message")
    assert await none_of(bob_game, "chat_message")
    b = await chat(bob)
    first = await b.recv()
    assert first == sent
    await b.close()
    again = await chat(bob)
    assert await again.nothing(0.3)
    await close_all(a, again, bob_game)


# --- content rules and bad input ---------------------------------------------------------


async def test_content_is_trimmed_and_500_characters_allowed():
    alice = await player()
    a = await chat(alice)
    await send(a, channel="global", content="\n  " + "é" * 500 + " \t")
    assert (await a.recv_type("chat_message"))["content"] == "é" * 500
    await send(a, channel="global", content="line one\n\tline two")
    assert (await a.recv_type("chat_message"))["content"] == "line one\n\tline two"
    await a.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"channel": "global"},
        {"content": "no channel"},
        {"channel": "global", "content": None},
        {"channel": "global", "content": 5},
        {"channel": "global", "content": ["hi"]},
        {"channel": "global", "content": {"text": "hi"}},
        {"channel": "global", "content": ""},
        {"channel": "global", "content": "  \n\t  "},
        {"channel": "global", "content": "x" * 501},
        {"channel": "global", "content": "x" * 60_000},
        {"channel": "global", "content": "bell\x07"},
        {"channel": "global", "content": "nul\x00"},
        {"channel": "trade", "content": "hi"},
        {"channel": "GLOBAL", "content": "hi"},
        {"channel": 1, "content": "hi"},
        {"channel": None, "content": "hi"},
        {"channel": "global", "content": "hi", "to": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"},
        {"channel": "guild", "content": "hi", "to": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"},
        {"channel": "private", "content": "hi"},
        {"channel": "private", "content": "hi", "to": None},
        {"channel": "private", "content": "hi", "to": "not-a-uuid"},
        {"channel": "private", "content": "hi", "to": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6"},
        {"channel": "private", "content": "hi", "to": 12345},
        {"channel": "private", "content": "hi", "to": "x" * 5000},
    ],
)
async def test_bad_chat_messages_are_invalid_and_the_connection_stays_open(frame):
    alice = await player()
    a = await chat(alice)
    error = await error_for(a, {"type": "chat_message", **frame})
    assert error["code"] == "invalid_message", error
    assert error["details"] and len(str(error)) < 2000  # no echo of a huge input
    assert (await a.request({"type": "ping", "id": "alive"}))["type"] == "pong"
    assert await db(ChatMessage.objects.count)() == 0
    await a.close()


async def test_private_message_to_yourself_is_invalid():
    alice = await player()
    a = await chat(alice)
    error = await error_for(a, {"type": "chat_message", "channel": "private", "content": "me", "to": str(alice.pk)})
    assert error["code"] == "invalid_message"
    await a.close()


async def test_oversized_frame_is_message_too_large():
    alice = await player()
    a = await chat(alice)
    await a.send({"type": "chat_message", "channel": "global", "content": "x" * 70_000, "id": "big"})
    assert (await a.recv())["code"] == "message_too_large"  # not parsed, so no id to repeat
    await a.close()


# --- typing --------------------------------------------------------------------------------


async def test_typing_reaches_others_never_the_senders_connections():
    alice, bob = await player(username="alice_t"), await player()
    a1, a2, b = await chat(alice), await chat(alice), await chat(bob)
    await a1.send({"type": "typing", "channel": "global", "is_typing": True})
    frame = await b.recv_type("typing")
    assert set(frame) == {"type", "user", "user_id", "channel", "is_typing", "timestamp"}
    assert (frame["user"], frame["user_id"], frame["channel"], frame["is_typing"]) == (
        "alice_t",
        str(alice.pk),
        "global",
        True,
    )
    assert await a1.nothing(0.3) and await a2.nothing(0.1)
    assert await db(ChatMessage.objects.count)() == 0
    await close_all(a1, a2, b)


async def test_typing_is_throttled_per_user_and_channel():
    alice, bob = await player(), await player()
    await party_of(alice, bob)
    a, b = await chat(alice), await chat(bob)
    for _ in range(3):
        await a.send({"type": "typing", "channel": "party", "is_typing": True})
    assert (await b.recv_type("typing"))["is_typing"] is True
    await a.send({"type": "typing", "channel": "global", "is_typing": True})  # another channel: its own throttle
    assert (await b.recv_type("typing"))["channel"] == "global"
    await a.send({"type": "typing", "channel": "party", "is_typing": False})  # stopping is never held back by starting
    stop = await b.recv_type("typing")
    assert (stop["channel"], stop["is_typing"]) == ("party", False)
    assert await b.nothing(0.3)
    await close_all(a, b)


async def test_private_typing_reaches_only_the_recipient():
    alice, bob, carol = await player(), await player(), await player()
    a, b, c = await chat(alice), await chat(bob), await chat(carol)
    ack = await a.request({"type": "typing", "channel": "private", "to": str(bob.pk), "is_typing": True, "id": "t"})
    assert ack["type"] == "ack"
    frame = await b.recv_type("typing")
    assert frame["channel"] == "private" and frame["user_id"] == str(alice.pk)
    assert await c.nothing(0.3) and await a.nothing(0.1)
    await close_all(a, b, c)


async def test_typing_in_guild_needs_membership():
    alice = await player()
    a = await chat(alice)
    assert (await error_for(a, {"type": "typing", "channel": "guild", "is_typing": True}))["code"] == "forbidden"
    await a.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"channel": "global"},
        {"channel": "global", "is_typing": "yes"},
        {"channel": "global", "is_typing": 1},
        {"channel": "shout", "is_typing": True},
        {"channel": "private", "is_typing": True},
        {"channel": "private", "is_typing": True, "to": "bob"},
        {"channel": "global", "is_typing": True, "to": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"},
    ],
)
async def test_bad_typing_frames_are_invalid(frame):
    alice = await player()
    a = await chat(alice)
    assert (await error_for(a, {"type": "typing", **frame}))["code"] == "invalid_message"
    await a.close()


# --- history -------------------------------------------------------------------------------


def _store(sender, count, channel="global", conversation="global", *, recipient=None, start=0):
    base = timezone.now() - timedelta(hours=1)
    return ChatMessage.objects.bulk_create(
        ChatMessage(
            channel=channel,
            conversation=conversation,
            sender=sender,
            sender_name=sender.username,
            recipient=recipient,
            content=f"m{start + n}",
            created_at=base + timedelta(seconds=start + n),
        )
        for n in range(count)
    )


async def test_history_pages_backwards_with_keyset_cursor_oldest_first():
    alice = await player()
    await db(_store)(alice, 120)
    a = await chat(alice)
    page = await a.request({"type": "history_request", "channel": "global"})
    assert page["type"] == "history" and page["channel"] == "global" and page["has_more"] is True
    assert [m["content"] for m in page["messages"]] == [f"m{n}" for n in range(70, 120)]
    assert set(page["messages"][0]) == FRAME_KEYS
    page2 = await a.request(
        {"type": "history_request", "channel": "global", "before": page["messages"][0]["message_id"]}
    )
    assert [m["content"] for m in page2["messages"]] == [f"m{n}" for n in range(20, 70)]
    assert page2["has_more"] is True
    page3 = await a.request(
        {"type": "history_request", "channel": "global", "limit": 50, "before": page2["messages"][0]["message_id"]}
    )
    assert [m["content"] for m in page3["messages"]] == [f"m{n}" for n in range(20)]
    assert page3["has_more"] is False
    await a.close()


async def test_history_limit_is_capped_at_100_and_exact_pages_report_no_more():
    alice = await player()
    await db(_store)(alice, 120)
    a = await chat(alice)
    big = await a.request({"type": "history_request", "channel": "global", "limit": 1000})
    assert len(big["messages"]) == 100 and big["has_more"] is True
    rest = await a.request(
        {"type": "history_request", "channel": "global", "limit": 20, "before": big["messages"][0]["message_id"]}
    )
    assert len(rest["messages"]) == 20 and rest["has_more"] is False
    one = await a.request({"type": "history_request", "channel": "global", "limit": 1})
    assert [m["content"] for m in one["messages"]] == ["m119"]
    await a.close()


async def test_history_includes_live_messages_as_delivered_and_leaves_out_deleted_ones():
    alice = await player()
    a = await chat(alice)
    for text in ("one", "two", "three"):
        await send(a, channel="global", content=text)
    delivered = [await a.recv_type("chat_message") for _ in range(3)]
    await db(ChatMessage.objects.filter(message_id=delivered[1]["message_id"]).update)(deleted_at=timezone.now())
    page = await a.request({"type": "history_request", "channel": "global"})
    # History reads the database: the same frames, without their stream positions.
    assert page["messages"] == [unpositioned(delivered[0]), unpositioned(delivered[2])]
    # A deleted message still works as a cursor.
    older = await a.request({"type": "history_request", "channel": "global", "before": delivered[1]["message_id"]})
    assert older["messages"] == [unpositioned(delivered[0])]
    await a.close()


async def test_guild_and_party_history_are_the_readers_own():
    alice, bob, outsider = await player(), await player(), await player()
    mine, theirs = await guild_of(alice), await guild_of(outsider)
    party = await party_of(alice, bob)
    await db(_store)(alice, 2, "guild", f"guild:{mine.pk}")
    await db(_store)(outsider, 3, "guild", f"guild:{theirs.pk}", start=10)
    await db(_store)(bob, 4, "party", f"party:{party.pk}", start=20)
    a, o = await chat(alice), await chat(outsider)
    assert [m["content"] for m in (await a.request({"type": "history_request", "channel": "guild"}))["messages"]] == [
        "m0",
        "m1",
    ]
    assert len((await o.request({"type": "history_request", "channel": "guild"}))["messages"]) == 3
    assert len((await a.request({"type": "history_request", "channel": "party"}))["messages"]) == 4
    assert (await error_for(o, {"type": "history_request", "channel": "party"}))["code"] == "forbidden"
    # A cursor from another guild's history is not found in this one.
    other_id = await db(lambda: str(ChatMessage.objects.filter(sender=outsider).first().message_id))()
    error = await error_for(a, {"type": "history_request", "channel": "guild", "before": other_id})
    assert error["code"] == "not_found"
    await close_all(a, o)


async def test_private_history_is_only_the_readers_conversation():
    alice, bob, carol = await player(), await player(), await player()
    a, b, c = await chat(alice), await chat(bob), await chat(carol)
    await send(a, channel="private", content="to bob", to=str(bob.pk))
    await send(b, channel="private", content="to alice", to=str(alice.pk))
    await send(c, channel="private", content="carol to alice", to=str(alice.pk))
    for client in (a, b):
        await client.recv_type("chat_message")
        await client.recv_type("chat_message")
    ab = await a.request({"type": "history_request", "channel": "private", "with": str(bob.pk)})
    assert [m["content"] for m in ab["messages"]] == ["to bob", "to alice"] and ab["with"] == str(bob.pk)
    ba = await b.request({"type": "history_request", "channel": "private", "with": str(alice.pk)})
    assert ba["messages"] == ab["messages"]
    cb = await c.request({"type": "history_request", "channel": "private", "with": str(bob.pk)})
    assert cb["messages"] == [] and cb["has_more"] is False
    unknown = await error_for(a, {"type": "history_request", "channel": "private", "with": str(uuid.uuid4())})
    assert unknown["code"] == "not_found" and set(unknown["details"]) == {"with"}
    await close_all(a, b, c)


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"channel": "trade"},
        {"channel": "global", "limit": 0},
        {"channel": "global", "limit": -5},
        {"channel": "global", "limit": "10"},
        {"channel": "global", "limit": 1.5},
        {"channel": "global", "limit": True},
        {"channel": "global", "before": "last"},
        {"channel": "global", "before": 17},
        {"channel": "global", "with": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"},
        {"channel": "private"},
        {"channel": "private", "with": "bob"},
    ],
)
async def test_bad_history_requests_are_invalid(frame):
    alice = await player()
    a = await chat(alice)
    assert (await error_for(a, {"type": "history_request", **frame}))["code"] == "invalid_message"
    await a.close()


async def test_history_with_unknown_cursor_or_yourself():
    alice = await player()
    a = await chat(alice)
    error = await error_for(a, {"type": "history_request", "channel": "global", "before": str(uuid.uuid4())})
    assert error["code"] == "not_found"
    error = await error_for(a, {"type": "history_request", "channel": "private", "with": str(alice.pk)})
    assert error["code"] == "invalid_message"
    await a.close()


# --- moderation ------------------------------------------------------------------------------


async def moderator(**fields):
    return await player(is_moderator=True, **fields)


async def moderate(client, **frame):
    return await client.request({"type": "moderation", **frame})


async def test_mute_blocks_chat_with_until_and_reaches_everyone():
    mod, target, watcher = await moderator(username="mod_name"), await player(), await player()
    m, t, w = await chat(mod), await chat(target), await chat(watcher)
    ack = await moderate(m, action="mute", user_id=str(target.pk), duration_seconds=60, reason=" spam ")
    assert ack["type"] == "ack" and ack["action"] == "mute" and ack["until"].endswith("Z")
    event = await w.recv_type("moderation_event")
    assert set(event) == EVENT_KEYS | STREAM_KEYS and event["stream"] == "chat:global"
    assert event["action"] == "mute" and event["user_id"] == str(target.pk) and event["message_id"] is None
    assert (event["moderator"], event["reason"], event["until"]) == ("mod_name", "spam", ack["until"])
    notice = await t.recv_type("moderation_notice")
    assert notice["action"] == "mute" and notice["until"] == ack["until"]
    # The open connection knows at once, without reconnecting.
    error = await error_for(t, {"type": "chat_message", "channel": "global", "content": "let me talk"})
    assert error["code"] == "muted" and error["details"] == {"until": ack["until"]}
    error = await error_for(t, {"type": "typing", "channel": "global", "is_typing": True})
    assert error["code"] == "muted"
    # ... and so does a new one, and reading history still works.
    t2 = await chat(target)
    assert (await error_for(t2, {"type": "chat_message", "channel": "global", "content": "x"}))["code"] == "muted"
    assert (await t2.request({"type": "history_request", "channel": "global"}))["type"] == "history"
    record = await db(ModerationAction.objects.get)()
    assert (record.action, record.moderator_id, record.target_id, record.reason, record.via) == (
        "mute",
        mod.pk,
        target.pk,
        "spam",
        "socket",
    )
    assert record.until is not None and abs((record.until - timezone.now()).total_seconds() - 60) < 5
    await close_all(m, t, w, t2)


async def until_accepted(client, frame, timeout=10.0):
    """Repeat `frame` until it is accepted (a mute ended); returns the number of attempts."""
    deadline = asyncio.get_running_loop().time() + timeout
    attempts = 0
    while True:
        attempts += 1
        reply = await client.request({**frame, "id": f"try-{attempts}"})
        if reply["type"] == "ack":
            return attempts
        assert reply["code"] == "muted" and asyncio.get_running_loop().time() < deadline, reply
        await asyncio.sleep(0.2)


async def test_mute_expires_on_its_own():
    mod, target = await moderator(), await player()
    m, t = await chat(mod), await chat(target)
    await moderate(m, action="mute", user_id=str(target.pk), duration_seconds=1)
    await t.recv_type("moderation_notice")
    assert (await error_for(t, {"type": "chat_message", "channel": "global", "content": "x"}))["code"] == "muted"
    # Nobody lifts it: it ends on its own.
    await until_accepted(t, {"type": "chat_message", "channel": "global", "content": "free again"})
    await close_all(m, t)


async def test_permanent_mute_and_unmute():
    mod, target = await moderator(), await player()
    m, t = await chat(mod), await chat(target)
    ack = await moderate(m, action="mute", user_id=str(target.pk))
    assert ack["until"] is None
    await t.recv_type("moderation_notice")
    error = await error_for(t, {"type": "chat_message", "channel": "global", "content": "x"})
    assert error["code"] == "muted" and error["details"] == {"until": None}
    assert (await db(User.objects.get)(pk=target.pk)).muted_until == PERMANENT
    await moderate(m, action="unmute", user_id=str(target.pk), reason="served")
    assert (await t.recv_type("moderation_notice"))["action"] == "unmute"
    assert (await t.request({"type": "chat_message", "channel": "global", "content": "thanks"}))["type"] == "ack"
    assert (await db(User.objects.get)(pk=target.pk)).muted_until is None
    await close_all(m, t)


async def test_ban_closes_every_connection_with_4403_and_refuses_new_ones_until_it_ends():
    mod, target, watcher = await moderator(), await player(), await player()
    m, w = await chat(mod), await chat(watcher)
    t_chat, t_game = await chat(target), await connect("/ws/game", access_token(target))
    ack = await moderate(m, action="ban", user_id=str(target.pk), duration_seconds=1.5, reason="cheating")
    assert ack["action"] == "ban" and ack["until"]
    for client in (t_chat, t_game):
        error = await client.recv_type("error")
        assert error["code"] == "banned" and "cheating" in error["message"]
        assert await client.expect_close() == CloseCode.FORBIDDEN
    assert (await w.recv_type("moderation_event"))["action"] == "ban"
    refused = await connect("/ws/chat", access_token(target), expect_established=False)
    assert (await refused.recv())["code"] == "banned"
    assert await refused.expect_close() == CloseCode.FORBIDDEN
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the ban ends on its own
        attempt = await connect("/ws/chat", access_token(target), expect_established=False)
        first = await attempt.recv()
        if first["type"] == "connection_established":
            break
        assert first["code"] == "banned" and asyncio.get_running_loop().time() < deadline
        await attempt.expect_close()
        await asyncio.sleep(0.2)
    await close_all(m, w, attempt)


async def test_unban_lets_a_permanently_banned_user_back():
    mod, target = await moderator(), await player()
    m = await chat(mod)
    assert (await moderate(m, action="ban", user_id=str(target.pk)))["until"] is None
    assert (await db(User.objects.get)(pk=target.pk)).banned_until == PERMANENT
    refused = await connect("/ws/chat", access_token(target), expect_established=False)
    assert (await refused.recv())["code"] == "banned"
    assert (await moderate(m, action="unban", user_id=str(target.pk)))["action"] == "unban"
    back = await chat(target)
    notices = [await back.recv_type("moderation_notice") for _ in range(2)]  # kept while they were away
    assert [n["action"] for n in notices] == ["ban", "unban"]
    await close_all(m, back)


async def test_kick_closes_every_connection_but_allows_reconnecting():
    mod, target = await moderator(), await player()
    m = await chat(mod)
    t_chat, t_world = await chat(target), await connect("/ws/world", access_token(target))
    ack = await moderate(m, action="kick", user_id=str(target.pk), reason="cool down")
    assert ack["action"] == "kick" and ack["until"] is None
    for client in (t_chat, t_world):
        assert (await client.recv_type("error"))["code"] == "kicked"
        assert await client.expect_close() == CloseCode.FORBIDDEN
    back = await chat(target)
    assert await back.nothing(0.2)  # the kick notice was not kept for later
    await close_all(m, back)


async def test_delete_message_hides_it_everywhere():
    mod, author, watcher = await moderator(username="mod_del"), await player(), await player()
    m, a, w = await chat(mod), await chat(author), await chat(watcher)
    await send(a, channel="global", content="something rude")
    message = await w.recv_type("chat_message")
    ack = await moderate(m, action="delete_message", message_id=message["message_id"], reason="rude")
    assert ack["message_id"] == message["message_id"]
    event = await w.recv_type("moderation_event")
    assert (event["action"], event["message_id"], event["user_id"], event["moderator"], event["reason"]) == (
        "delete_message",
        message["message_id"],
        str(author.pk),
        "mod_del",
        "rude",
    )
    assert (await a.recv_type("moderation_notice"))["message_id"] == message["message_id"]
    assert (await w.request({"type": "history_request", "channel": "global"}))["messages"] == []
    again = await moderate(m, action="delete_message", message_id=message["message_id"])
    assert again["code"] == "not_found"
    record = await db(ModerationAction.objects.get)()
    assert str(record.message_id) == message["message_id"] and record.target_id == author.pk
    await close_all(m, a, w)


async def test_a_deleted_private_message_is_not_delivered_to_its_offline_recipient():
    mod, alice, bob = await moderator(), await player(), await player()
    m, a = await chat(mod), await chat(alice)
    await send(a, channel="private", content="kept for bob, then deleted", to=str(bob.pk))
    deleted = await a.recv_type("chat_message")
    await send(a, channel="private", content="kept for bob", to=str(bob.pk))
    kept = await a.recv_type("chat_message")
    await moderate(m, action="delete_message", message_id=deleted["message_id"])
    b = await chat(bob)
    assert (await b.recv_type("chat_message"))["message_id"] == kept["message_id"]
    assert await none_of(b, "chat_message")
    await close_all(m, a, b)


async def test_moderating_private_and_guild_messages_works_too():
    mod, alice, bob = await moderator(), await player(), await player()
    await guild_of(alice)
    m, a = await chat(mod), await chat(alice)
    await send(a, channel="private", content="secret", to=str(bob.pk))
    await send(a, channel="guild", content="guild talk")
    ids = [(await a.recv_type("chat_message"))["message_id"] for _ in range(2)]
    for message_id in ids:
        assert (await moderate(m, action="delete_message", message_id=message_id))["type"] == "ack"
    assert (await a.request({"type": "history_request", "channel": "guild"}))["messages"] == []
    assert (await a.request({"type": "history_request", "channel": "private", "with": str(bob.pk)}))["messages"] == []
    await close_all(m, a)


async def test_only_moderators_and_staff_may_moderate():
    plain, target = await player(), await player()
    client = await chat(plain)
    for action in ("mute", "ban", "kick", "unmute", "unban"):
        assert (await moderate(client, action=action, user_id=str(target.pk)))["code"] == "forbidden"
    assert (await moderate(client, action="delete_message", message_id=str(uuid.uuid4())))["code"] == "forbidden"
    assert await db(ModerationAction.objects.count)() == 0
    staff = await player(is_staff=True)
    s = await chat(staff)
    assert (await moderate(s, action="kick", user_id=str(target.pk)))["type"] == "ack"
    await close_all(client, s)


async def test_moderator_role_is_checked_again_at_the_time_of_acting():
    mod, target = await moderator(), await player()
    m = await chat(mod)
    await db(User.objects.filter(pk=mod.pk).update)(is_moderator=False)
    assert (await moderate(m, action="mute", user_id=str(target.pk)))["code"] == "forbidden"
    await m.close()


async def test_moderation_targets_rules():
    mod, other_mod, staff, staff2 = (
        await moderator(),
        await moderator(),
        await player(is_staff=True),
        await player(is_staff=True),
    )
    m, s = await chat(mod), await chat(staff)
    assert (await moderate(m, action="mute", user_id=str(mod.pk)))["code"] == "forbidden"  # yourself
    assert (await moderate(m, action="mute", user_id=str(other_mod.pk)))["code"] == "forbidden"
    assert (await moderate(m, action="ban", user_id=str(staff.pk)))["code"] == "forbidden"
    assert (await moderate(s, action="ban", user_id=str(staff2.pk)))["code"] == "forbidden"
    assert (await moderate(s, action="mute", user_id=str(other_mod.pk), duration_seconds=5))["type"] == "ack"
    assert (await moderate(m, action="mute", user_id=str(uuid.uuid4())))["code"] == "not_found"
    assert (await moderate(m, action="delete_message", message_id=str(uuid.uuid4())))["code"] == "not_found"
    assert await db(ModerationAction.objects.count)() == 1
    await close_all(m, s)


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"action": "explode", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"},
        {"action": "mute"},
        {"action": "kick", "user_id": None},
        {"action": "ban", "user_id": "someone"},
        {"action": "delete_message"},
        {"action": "delete_message", "message_id": "m-1"},
        {"action": "mute", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "duration_seconds": 0},
        {"action": "mute", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "duration_seconds": -5},
        {"action": "mute", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "duration_seconds": "600"},
        {"action": "mute", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "duration_seconds": True},
        {"action": "ban", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "duration_seconds": 1e15},
        {"action": "ban", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "reason": "x" * 501},
        {"action": "ban", "user_id": "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b", "reason": 5},
    ],
)
async def test_bad_moderation_frames_are_invalid(frame):
    mod = await moderator()
    m = await chat(mod)
    assert (await moderate(m, **frame))["code"] == "invalid_message"
    await m.close()


# --- the per-user chat rate limit ------------------------------------------------------------


async def test_chat_rate_limit_counts_all_of_a_users_connections(settings):
    settings.CHAT_RATE_LIMIT = 3
    alice, bob = await player(), await player()
    a1, a2, b = await chat(alice), await chat(alice), await chat(bob)
    replies = []
    for n in range(5):
        client = a1 if n % 2 == 0 else a2
        replies.append(await client.request({"type": "chat_message", "channel": "global", "content": f"{n}", "id": n}))
    assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error", "error"]
    assert replies[3]["code"] == "rate_limited" and replies[3]["details"] == {"limit": 3, "window_seconds": 10}
    assert (await b.request({"type": "chat_message", "channel": "global", "content": "me"}))["type"] == "ack"
    assert await db(ChatMessage.objects.filter(sender=alice).count)() == 3
    await close_all(a1, a2, b)


async def test_chat_rate_limit_zero_disables_it(settings):
    settings.CHAT_RATE_LIMIT = 0
    settings.WEBSOCKET_RATE_LIMIT = "0"
    alice = await player()
    a = await chat(alice)
    for n in range(40):
        assert (await a.request({"type": "chat_message", "channel": "global", "content": f"{n}", "id": n}))[
            "type"
        ] == "ack"
    await a.close()


# --- cost per message ------------------------------------------------------------------------


@pytest.fixture
def publishes(monkeypatch):
    """The channel-layer publishes made during a test (group names; stream frames included)."""
    seen: list[str] = []
    layer_class = type(get_channel_layer())
    original = layer_class.group_send

    async def counting(self, group, message):
        if message.get("type") == "rt.event":
            seen.append(group)
        return await original(self, group, message)

    monkeypatch.setattr(layer_class, "group_send", counting)
    return seen


async def test_one_publish_per_message_whatever_the_audience(publishes):
    users = [await player() for _ in range(6)]
    await guild_of(*users)
    clients = [await chat(user) for user in users]
    await asyncio.sleep(0.2)  # let the connects' own announcements go out first
    for channel in ("global", "guild"):
        publishes.clear()
        await send(clients[0], channel=channel, content="to all")
        for client in clients:
            await client.recv_type("chat_message")
        assert len(publishes) == 1, publishes
    publishes.clear()
    await send(clients[0], channel="private", content="to one", to=str(users[1].pk))
    await clients[1].recv_type("chat_message")
    await clients[0].recv_type("chat_message")
    assert sorted(publishes) == sorted([f"user.{users[0].pk}", f"user.{users[1].pk}"])
    await close_all(*clients)


async def test_refused_messages_cost_no_database_work(monkeypatch):
    async def no_database(**kwargs):
        raise AssertionError("the database was used")

    monkeypatch.setattr(chat_service, "chat_message_store_async", no_database)
    muted = await player(muted_until=timezone.now() + timedelta(minutes=5))
    loner = await player()
    m, lone = await chat(muted), await chat(loner)
    assert (await error_for(m, {"type": "chat_message", "channel": "global", "content": "x"}))["code"] == "muted"
    assert (await error_for(lone, {"type": "chat_message", "channel": "guild", "content": "x"}))["code"] == "forbidden"
    await close_all(m, lone)
