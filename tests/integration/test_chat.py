"""/ws/chat across two real instances sharing Redis: every audience, history, typing, each
moderation action and its expiry, and exactly-once offline delivery of private messages."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from accounts.models import User
from tests.support.cluster import WsClient
from tests.support.db import db
from tests.support.faults import until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def register(server, name, **flags):
    user_id, token = await asyncio.to_thread(server.register, name)
    if flags:
        await db(User.objects.filter(pk=user_id).update)(**flags)
    return user_id, token


async def http(server, method, path, token, body=None):
    status, payload = await asyncio.to_thread(server.request, method, path, body, token)
    assert status in (200, 201), (status, payload)
    return payload


async def chat(server, token):
    return await WsClient.open(f"{server.ws}/ws/chat", token)


async def say(client, **frame):
    reply = await client.request({"type": "chat_message", **frame})
    assert reply["type"] == "ack", reply
    return reply


async def moderate(client, **frame):
    reply = await client.request({"type": "moderation", **frame})
    assert reply["type"] == "ack", reply
    return reply


async def close_all(*clients):
    for client in clients:
        await client.close()


# --- audiences across instances --------------------------------------------------------------


async def test_global_message_reaches_chat_connections_on_both_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    _, bob = await register(b, unique("bob"))
    sender, on_a, on_b = await chat(a, alice), await chat(a, bob), await chat(b, bob)
    text = unique("hello-")
    ack = await say(sender, channel="global", content=text)
    for client in (on_a, on_b):
        frame = await client.recv_type("chat_message", content=text)
        assert frame["message_id"] == ack["message_id"] and frame["user_id"] == alice_id and frame["to"] is None
    await close_all(sender, on_a, on_b)


async def test_guild_chat_follows_membership_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, alice = await register(a, unique("alice"))
    _, bob = await register(b, unique("bob"))
    _, carol = await register(b, unique("carol"))
    guild = await http(a, "POST", "/api/v1/guilds/", alice, {"name": unique("Guild"), "open": True})
    alice_ws, bob_ws, carol_ws = await chat(a, alice), await chat(b, bob), await chat(b, carol)
    # Bob joins while connected (through the other instance's HTTP API).
    await http(a, "POST", f"/api/v1/guilds/{guild['id']}/join/", bob)

    async def bob_hears_the_guild() -> dict | None:  # once his instance has moved his groups
        await say(alice_ws, channel="guild", content="guild hello")
        with contextlib.suppress(TimeoutError):
            return await bob_ws.recv_type("chat_message", content="guild hello", timeout=1)
        return None

    assert (await until(bob_hears_the_guild, timeout=15, what="guild chat after the join"))[0]["channel"] == "guild"
    assert await carol_ws.nothing_of("chat_message", 0.6)
    reply = await carol_ws.request({"type": "chat_message", "channel": "guild", "content": "let me in"})
    assert reply["code"] == "forbidden"
    await close_all(alice_ws, bob_ws, carol_ws)


async def test_party_chat_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, alice = await register(a, unique("alice"))
    _, bob = await register(b, unique("bob"))
    _, carol = await register(a, unique("carol"))
    party = await http(a, "POST", "/api/v1/parties/", alice, {"name": "raid", "open": True})
    await http(b, "POST", f"/api/v1/parties/{party['id']}/join/", bob)
    alice_ws, bob_ws, carol_ws = await chat(a, alice), await chat(b, bob), await chat(a, carol)
    await say(bob_ws, channel="party", content="pull now")
    assert (await alice_ws.recv_type("chat_message", content="pull now"))["channel"] == "party"
    assert await carol_ws.nothing_of("chat_message", 0.6)
    await close_all(alice_ws, bob_ws, carol_ws)


async def test_private_message_reaches_recipient_and_senders_other_connections_only(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    _, carol = await register(b, unique("carol"))
    alice_a, alice_b, bob_b, carol_b = (
        await chat(a, alice),
        await chat(b, alice),
        await chat(b, bob),
        await chat(b, carol),
    )
    ack = await say(alice_a, channel="private", content="just us", to=bob_id)
    for client in (bob_b, alice_b):
        frame = await client.recv_type("chat_message", content="just us")
        assert (frame["message_id"], frame["channel"], frame["to"], frame["user_id"]) == (
            ack["message_id"],
            "private",
            bob_id,
            alice_id,
        )
    assert await carol_b.nothing_of("chat_message", 0.6)
    await close_all(alice_a, alice_b, bob_b, carol_b)


# --- history and typing ----------------------------------------------------------------------


async def test_history_pages_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    alice_ws, bob_ws = await chat(a, alice), await chat(b, bob)
    for n in range(7):
        sender, other = (alice_ws, bob_id) if n % 2 == 0 else (bob_ws, alice_id)
        await say(sender, channel="private", content=f"m{n}", to=other)
    pages, before = [], None
    while True:
        request = {"type": "history_request", "channel": "private", "with": alice_id, "limit": 3}
        if before:
            request["before"] = before
        page = await bob_ws.request(request)
        assert page["type"] == "history", page
        pages.append([m["content"] for m in page["messages"]])
        if not page["has_more"]:
            break
        before = page["messages"][0]["message_id"]
    assert pages == [["m4", "m5", "m6"], ["m1", "m2", "m3"], ["m0"]]
    await close_all(alice_ws, bob_ws)


async def test_typing_reaches_others_on_both_instances_and_never_the_sender(cluster, unique):
    a, b = cluster[0], cluster[1]
    alice_id, alice = await register(a, unique("alice"))
    _, bob = await register(b, unique("bob"))
    party = await http(a, "POST", "/api/v1/parties/", alice, {"name": "typing", "open": True})
    await http(b, "POST", f"/api/v1/parties/{party['id']}/join/", bob)
    alice_a, alice_b, bob_a, bob_b = await chat(a, alice), await chat(b, alice), await chat(a, bob), await chat(b, bob)
    await alice_a.send({"type": "typing", "channel": "party", "is_typing": True})
    for client in (bob_a, bob_b):
        frame = await client.recv_type("typing", user_id=alice_id)
        assert frame["is_typing"] is True and frame["channel"] == "party"
    assert await alice_a.nothing_of("typing", 0.6)
    assert await alice_b.nothing_of("typing", 0.1)
    # The throttle is shared: a repeat from the other instance within the window is not sent.
    await alice_b.send({"type": "typing", "channel": "party", "is_typing": True})
    assert await bob_a.nothing_of("typing", 0.6)
    await close_all(alice_a, alice_b, bob_a, bob_b)


# --- moderation across instances -------------------------------------------------------------


async def test_mute_reaches_the_other_instance_at_once_and_expires(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    target_id, target = await register(b, unique("target"))
    mod_ws, target_ws, watcher = await chat(a, mod), await chat(b, target), await chat(b, mod)
    ack = await moderate(mod_ws, action="mute", user_id=target_id, duration_seconds=2.5, reason="flood")
    event = await watcher.recv_type("moderation_event", user_id=target_id)
    assert (event["action"], event["reason"], event["until"]) == ("mute", "flood", ack["until"])
    await target_ws.recv_type("moderation_notice")
    reply = await target_ws.request({"type": "chat_message", "channel": "global", "content": "hey"})
    assert reply["code"] == "muted" and reply["details"]["until"] == ack["until"]
    # Nobody lifts it: it ends on its own.
    deadline = time.monotonic() + 15
    while (reply := await target_ws.request({"type": "chat_message", "channel": "global", "content": "free?"}))[
        "type"
    ] != "ack":
        assert reply["code"] == "muted" and time.monotonic() < deadline, reply
        await asyncio.sleep(0.25)
    await close_all(mod_ws, target_ws, watcher)


async def test_permanent_mute_then_unmute_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    target_id, target = await register(b, unique("target"))
    mod_ws, target_ws = await chat(a, mod), await chat(b, target)
    assert (await moderate(mod_ws, action="mute", user_id=target_id))["until"] is None
    await target_ws.recv_type("moderation_notice", action="mute")
    reply = await target_ws.request({"type": "chat_message", "channel": "global", "content": "hey"})
    assert reply["code"] == "muted" and reply["details"] == {"until": None}
    await moderate(mod_ws, action="unmute", user_id=target_id)
    await target_ws.recv_type("moderation_notice", action="unmute")
    await say(target_ws, channel="global", content="thank you")
    await close_all(mod_ws, target_ws)


async def test_ban_closes_connections_on_the_other_instance_and_expires(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    target_id, target = await register(b, unique("target"))
    mod_ws = await chat(a, mod)
    victims = [await chat(b, target), await WsClient.open(f"{b.ws}/ws/game", target)]
    await moderate(mod_ws, action="ban", user_id=target_id, duration_seconds=3, reason="botting")
    for client in victims:
        assert await client.closed_with(timeout=5) == 4403
        errors = [f for f in client.received if f.get("type") == "error"]
        assert errors and errors[-1]["code"] == "banned"
    refused = await WsClient.open(f"{a.ws}/ws/chat?token={target}", expect_established=False)
    assert await refused.closed_with() == 4403
    assert refused.received[0]["code"] == "banned"
    deadline = time.monotonic() + 15
    while True:  # the ban ends on its own
        attempt = await WsClient.open(f"{a.ws}/ws/chat?token={target}", expect_established=False)
        first = await attempt.recv()
        if first["type"] == "connection_established":
            break
        assert first["code"] == "banned" and time.monotonic() < deadline, first
        await attempt.closed_with()
        await asyncio.sleep(0.25)
    await close_all(mod_ws, attempt)


async def test_unban_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    target_id, target = await register(b, unique("target"))
    mod_ws = await chat(b, mod)
    assert (await moderate(mod_ws, action="ban", user_id=target_id))["until"] is None
    refused = await WsClient.open(f"{a.ws}/ws/chat?token={target}", expect_established=False)
    assert await refused.closed_with() == 4403
    await moderate(mod_ws, action="unban", user_id=target_id)
    back = await chat(a, target)
    await close_all(mod_ws, back)


async def test_kick_closes_connections_on_the_other_instance(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    target_id, target = await register(b, unique("target"))
    mod_ws = await chat(a, mod)
    victims = [await chat(b, target), await WsClient.open(f"{b.ws}/ws/world", target), await chat(a, target)]
    await moderate(mod_ws, action="kick", user_id=target_id)
    for client in victims:
        assert await client.closed_with(timeout=5) == 4403
        assert [f["code"] for f in client.received if f.get("type") == "error"] == ["kicked"]
    back = await chat(b, target)  # a kick is not a ban
    await close_all(mod_ws, back)


async def test_delete_message_across_instances(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, mod = await register(a, unique("mod"), is_moderator=True)
    author_id, author = await register(b, unique("author"))
    mod_ws, author_ws, watcher = await chat(a, mod), await chat(b, author), await chat(b, mod)
    text = unique("rude-")
    ack = await say(author_ws, channel="global", content=text)
    await moderate(mod_ws, action="delete_message", message_id=ack["message_id"], reason="rude")
    event = await watcher.recv_type("moderation_event", message_id=ack["message_id"])
    assert (event["action"], event["user_id"], event["reason"]) == ("delete_message", author_id, "rude")
    history = await watcher.request({"type": "history_request", "channel": "global", "limit": 100})
    assert ack["message_id"] not in {m["message_id"] for m in history["messages"]}
    await close_all(mod_ws, author_ws, watcher)


# --- offline delivery (docs/protocol.md §9) ----------------------------------------------------------


async def test_offline_private_messages_arrive_exactly_once_despite_racing_reconnects(cluster, unique):
    a, b = cluster[0], cluster[1]
    _, alice = await register(a, unique("alice"))
    bob_id, bob = await register(b, unique("bob"))
    alice_ws = await chat(a, alice)
    sent = [(await say(alice_ws, channel="private", content=f"offline {n}", to=bob_id))["message_id"] for n in range(3)]
    # Bob comes back on both instances at the same moment.
    first, second = await asyncio.gather(chat(a, bob), chat(b, bob))
    got = []
    for client in (first, second):
        deadline = time.monotonic() + 1.5
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                frame = await client.recv(remaining)
            except TimeoutError:
                break
            if frame["type"] == "chat_message":
                got.append(frame["message_id"])
    assert sorted(got) == sorted(sent)
    await close_all(first, second)
    again = await chat(b, bob)
    assert await again.nothing_of("chat_message", 0.6)
    await close_all(alice_ws, again)
