"""Chat content that shows nothing or reorders itself (docs/protocol.md §5), and private history
with a deactivated user answering exactly like a deleted one (no account enumeration)."""

from __future__ import annotations

import uuid

import pytest

from accounts.models import User
from realtime.models import ChatMessage
from realtime.protocol.text import InvisibleText, has_visible_character, visible_text, without_bidi_controls
from tests.support.communicator import connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

BIDI_CONTROLS = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


# --- the rule itself -------------------------------------------------------------------------------


def test_every_bidirectional_override_and_isolate_is_removed():
    assert len(BIDI_CONTROLS) == 9
    assert without_bidi_controls("a" + "".join(BIDI_CONTROLS) + "b") == "ab"
    assert visible_text("\u202egnp.exe") == "gnp.exe"


@pytest.mark.parametrize(
    "text",
    [
        "\u200b",  # zero-width space
        "\u200c\u200d",  # non-joiner, joiner
        "\u2060\ufeff",  # word joiner, byte order mark
        "\u00ad\u061c\u200e\u200f",  # soft hyphen, Arabic letter mark, direction marks
        "\U000e0020\U000e0041",  # tag characters
        "\u3164\u115f\u1160\uffa0",  # Hangul fillers
        "\u2800",  # blank Braille pattern
        "\u034f\ufe0f\U000e0100",  # grapheme joiner, variation selectors
        "\u00a0\u2028\u2029\u3000",  # separators of every kind
    ],
)
def test_text_of_only_invisible_characters_shows_nothing(text):
    assert not has_visible_character(text)
    with pytest.raises(InvisibleText, match=r"visible|empty"):  # separators alone are trimmed away
        visible_text(f" {text} ")


@pytest.mark.parametrize("text", ["a", "é", "\u0645", "\U0001f409", "e\u0301", "\U0001f468\u200d\U0001f469", "._."])
def test_anything_with_a_visible_character_shows(text):
    assert has_visible_character(text)
    assert visible_text(text) == text


def test_control_characters_are_refused_but_tab_and_newline_in_multiline_text():
    assert visible_text("a\tb\nc", multiline=True) == "a\tb\nc"
    for text in ("a\tb", "a\nb", "a\x00b"):
        with pytest.raises(InvisibleText, match="control"):
            visible_text(text)
    for text in ("a\x07b", "a\x1b[31mb", "a\x85b", "a\x7fb"):
        with pytest.raises(InvisibleText, match="control"):
            visible_text(text, multiline=True)


# --- chat content ----------------------------------------------------------------------------------


async def chat(user):
    return await connect("/ws/chat", await db(access_token)(user))


@pytest.mark.parametrize(
    "content",
    [
        "\u200b",
        "\u200b\u200b\u200b\u200b",
        "\u2060\ufeff\u200d",
        "\u3164",
        "\u2800\u2800",
        "\u202e",  # an override alone: nothing left once it is removed
        "\u202e\u200b\u2066 \u2069",
        "\u00a0\u3000",
    ],
)
async def test_chat_refuses_content_that_shows_nothing(content):
    alice = await db(make_user)()
    client = await chat(alice)
    error = await client.request({"type": "chat_message", "channel": "global", "content": content})
    assert error["type"] == "error" and error["code"] == "invalid_message", error
    assert error["details"][0]["field"] == "content"
    assert await db(ChatMessage.objects.count)() == 0
    assert (await client.request({"type": "ping"}))["type"] == "pong"  # still open
    await client.close()


async def test_chat_removes_bidirectional_overrides_and_keeps_everything_else():
    alice, bob = await db(make_user)(), await db(make_user)()
    sender, reader = await chat(alice), await chat(bob)
    await sender.send(
        {"type": "chat_message", "channel": "global", "content": "see \u202egnp.exe\u202c \u2067here\u2069"}
    )
    heard = await reader.recv_type("chat_message")
    assert heard["content"] == "see gnp.exe here"
    stored = await db(ChatMessage.objects.get)()
    assert stored.content == "see gnp.exe here"
    # Zero-width characters inside visible text stay (emoji sequences need the joiner).
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467 hi"
    await sender.send({"type": "chat_message", "channel": "global", "content": family})
    assert (await reader.recv_type("chat_message"))["content"] == family
    await sender.close()
    await reader.close()


async def test_the_length_limit_counts_after_the_overrides_are_removed():
    alice = await db(make_user)()
    client = await chat(alice)
    await client.send({"type": "chat_message", "channel": "global", "content": "\u202e" * 20 + "x" * 500})
    assert (await client.recv_type("chat_message"))["content"] == "x" * 500
    await client.close()


# --- private history: no account enumeration --------------------------------------------------------


async def test_history_with_a_deactivated_user_answers_exactly_like_with_a_deleted_one():
    alice, bob, gone = await db(make_user)(), await db(make_user)(), await db(make_user)()
    client = await chat(alice)
    await client.send({"type": "chat_message", "channel": "private", "content": "hi bob", "to": str(bob.pk)})
    await client.recv_type("chat_message")
    # Active: the conversation reads.
    page = await client.request({"type": "history_request", "channel": "private", "with": str(bob.pk), "id": "h"})
    assert page["type"] == "history" and [m["content"] for m in page["messages"]] == ["hi bob"]
    await db(User.objects.filter(pk=bob.pk).update)(is_active=False)
    gone_id = str(gone.pk)
    await db(gone.delete)()
    answers = {}
    for name, user_id in (("deactivated", str(bob.pk)), ("deleted", gone_id), ("unknown", str(uuid.uuid4()))):
        reply = await client.request({"type": "history_request", "channel": "private", "with": user_id, "id": "h"})
        assert reply["type"] == "error", reply
        # Everything but the id the caller sent itself is the same.
        answers[name] = {**reply, "details": {k: v for k, v in reply["details"].items() if k != "with"}}
        assert reply["details"]["with"] == user_id
    assert answers["deactivated"] == answers["deleted"] == answers["unknown"]
    assert answers["deleted"] == {
        "type": "error",
        "code": "not_found",
        "message": "No such user.",
        "id": "h",
        "details": {},
    }
    await client.close()
