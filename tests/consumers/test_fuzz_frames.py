"""Property: whatever a client sends, on any endpoint, with any role, every reply is a
well-formed `error` (a documented code, a string message, nothing internal in it) or a valid
result, the connection survives (a ping afterwards gets its pong), and nothing is logged as a
crash. Frames are random and mutated: valid JSON of wrong shapes, deep nesting, huge numbers,
NaN/Infinity, unicode edge cases (lone surrogates, RTL, zero-width, emoji), binary, oversized.

Bounded in time: a fixed number of examples per endpoint, no per-example deadline, no example
database written to disk.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import Guild, Party
from realtime.models import ChatMessage
from realtime.protocol import ErrorCode
from tests.support.communicator import Client, connect
from tests.support.db import db
from tests.support.users import access_token, make_user

pytestmark = pytest.mark.django_db(transaction=True)

MAX_BYTES = 2048  # WEBSOCKET_MAX_MESSAGE_BYTES in these tests, so oversized frames are cheap
EXAMPLES = 200

DOCUMENTED_CODES = {code.value for code in ErrorCode} - {"internal_error"}  # internal_error is a bug
COMMON_TYPES = {"token_refreshed"}  # every endpoint's reply to token_refresh
SERVER_TYPES = {
    "game": {"ack", "pong", "ping", "player_status", "achievement", "system_announcement", "game_state"},
    "chat": {"ack", "pong", "ping", "chat_message", "typing", "history", "moderation_event", "moderation_notice"},
    "combat": {
        "pong",
        "ping",
        "combat_state",
        "combat_action_result",
        "combat_timeout",
        "combat_end",
        "combat_participant",
    },
    "world": {
        "ack",
        "pong",
        "ping",
        "zone_changed",
        "nearby_players",
        "player_movement",
        "player_entered",
        "player_left",
        "world_event",
    },
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# What must never reach a client: tracebacks, source paths, SQL, driver names.
LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages|/work/|/usr/|\bSELECT\b|\bINSERT\b|sqlite|psycopg", re.I)

NASTY_TEXT = [
    "\ud800",  # lone high surrogate (only possible in-process; real servers refuse invalid UTF-8)
    "\udfff",
    "\u202eevil\u202c",  # right-to-left override
    "a\u200bb\u200d\ufeff",  # zero-width characters, BOM
    "🐉🔥👨‍👩‍👧",  # emoji, ZWJ sequence
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\x00\x07\x1b[31m",  # control characters, terminal escape
    "ﷺ" * 40,
    "   ",
    "",
]
RAW_FRAMES = [
    "",
    "null",
    "[]",
    '"type"',
    "{",
    '{"type": "ping"',
    '{"type": NaN}',
    '{"type": "ping", "id": Infinity}',
    '{"type": "chat_message", "x": 1e400}',
    '{"type": "player_movement", "zone": "starter_town", "x": NaN, "y": -Infinity}',
    '{"type": "ping", "id": "\\ud800"}',
    '{"type": "\\udc00"}',
    '{"type": "ping", "type": "pong"}',
    "[" * 2000 + "]" * 2000,
    '{"a":' * 1100 + "1" + "}" * 1100,
    '{"type": "ping", "id": 123456789012345678901234567890123456789012345678901234567890123456789}',
    "\ud800",
    '{"type": "ping", "x": "' + "\ud800" * 600 + '"}',  # long enough for the size check to encode it
    '{"type": "ping"}\x00',
]

text = st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXT))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**63, -(2**63) - 1, 1e308, -1e-308, 0.5]),
    text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@dataclass
class World:
    """The users and things the frames refer to, so mutations start from frames that work."""

    tokens: dict[str, str]
    ids: dict[str, str]
    message_id: str
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def templates(endpoint: str, world: World) -> list[dict[str, Any]]:
    other, victim = world.ids["other"], world.ids["victim"]
    common = [
        {"type": "ping"},
        {"type": "pong"},
        {"type": "token_refresh", "token": world.tokens["member"]},
        {"type": "token_refresh", "token": world.tokens["victim"]},
    ]
    return (
        common
        + {
            "game": [{"type": "set_status", "status": "away"}, {"type": "set_status", "status": "online"}],
            "chat": [
                {"type": "chat_message", "channel": "global", "content": "hello"},
                {"type": "chat_message", "channel": "guild", "content": "guild"},
                {"type": "chat_message", "channel": "party", "content": "party"},
                {"type": "chat_message", "channel": "private", "to": other, "content": "psst"},
                {"type": "typing", "channel": "global", "is_typing": True},
                {"type": "typing", "channel": "private", "to": other, "is_typing": False},
                {"type": "history_request", "channel": "global", "limit": 5},
                {"type": "history_request", "channel": "private", "with": other, "before": world.message_id},
                {"type": "moderation", "action": "mute", "user_id": victim, "duration_seconds": 60, "reason": "x"},
                {"type": "moderation", "action": "unmute", "user_id": victim},
                {"type": "moderation", "action": "delete_message", "message_id": world.message_id},
            ],
            "combat": [
                {"type": "combat_start", "monsters": ["goblin"], "with_party": False},
                {
                    "type": "combat_action",
                    "combat_session_id": world.session_id,
                    "action": "attack",
                    "target": "goblin-1",
                },
                {"type": "combat_action", "combat_session_id": world.session_id, "action": "defend", "round": 1},
                {"type": "combat_state_request"},
                {"type": "combat_state_request", "combat_session_id": world.session_id},
            ],
            "world": [
                {"type": "zone_change", "zone": "starter_town", "x": 500, "y": 500},
                {"type": "zone_change", "zone": "dark_forest"},
                {"type": "player_movement", "zone": "starter_town", "x": 510, "y": 505},
                {"type": "nearby_players_request"},
            ],
        }[endpoint]
    )


@st.composite
def mutated(draw, base: dict[str, Any]) -> Any:
    frame: Any = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        choice = draw(st.sampled_from(["set", "drop", "add", "type", "id", "wrap"]))
        if not isinstance(frame, dict):
            break
        keys = sorted(frame)
        if choice == "set" and keys:
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif choice == "drop" and keys:
            frame.pop(draw(st.sampled_from(keys)))
        elif choice == "add":
            frame[draw(text)] = draw(json_values)
        elif choice == "type":
            frame["type"] = draw(st.one_of(text, json_values))
        elif choice == "id":
            frame["id"] = draw(st.one_of(json_values, st.text(min_size=60, max_size=80), st.integers()))
        elif choice == "wrap":
            frame = draw(st.sampled_from([[frame], {"frame": frame}, json.dumps(frame)]))
    return frame


@st.composite
def frames(draw, endpoint: str, world: World) -> tuple[str, str | bytes]:
    """("text"|"bytes", payload)."""
    kind = draw(
        st.sampled_from(["valid", "valid", "mutated", "mutated", "mutated", "shape", "raw", "binary", "oversized"])
    )
    if kind == "binary":
        return "bytes", draw(st.binary(max_size=64))
    if kind == "raw":
        return "text", draw(st.one_of(st.sampled_from(RAW_FRAMES), st.text(max_size=60)))
    if kind == "oversized":
        base = draw(st.sampled_from(templates(endpoint, world)))
        return "text", json.dumps({**base, "padding": "é" * draw(st.integers(MAX_BYTES // 2, MAX_BYTES * 2))})
    if kind == "valid":  # as a client would send it, with or without an id
        value = {
            **draw(st.sampled_from(templates(endpoint, world))),
            **draw(st.sampled_from([{}, {"id": "v1"}, {"id": 7}])),
        }
    elif kind == "shape":
        value = draw(json_values)
    else:
        value = draw(mutated(draw(st.sampled_from(templates(endpoint, world)))))
    return "text", json.dumps(value, ensure_ascii=draw(st.booleans()))


ROLES = {
    "game": ["anonymous", "member", "moderator"],
    "chat": ["member", "other", "moderator", "staff"],
    "combat": ["member", "other"],
    "world": ["anonymous", "member"],
}


@pytest.fixture
def fuzz_settings(settings):
    settings.WEBSOCKET_MAX_MESSAGE_BYTES = MAX_BYTES
    settings.WEBSOCKET_RATE_LIMIT = "0"
    settings.CHAT_RATE_LIMIT = 0
    settings.WORLD_MOVE_RATE_LIMIT = 0
    settings.WEBSOCKET_MAX_CONNECTIONS_PER_USER = 0
    return settings


async def make_world() -> World:
    guild = await db(Guild.objects.create)(name="Fuzzers")
    party = await db(Party.objects.create)(name="Band")
    users = {
        "member": await db(make_user)(guild=guild, party=party),
        "other": await db(make_user)(),
        "moderator": await db(make_user)(is_moderator=True),
        "staff": await db(make_user)(is_staff=True),
        "victim": await db(make_user)(),
    }
    message = await db(ChatMessage.objects.create)(
        channel="global", conversation="global", sender=users["member"], sender_name="m", content="first"
    )
    return World(
        tokens={role: access_token(user) for role, user in users.items()},
        ids={role: str(user.pk) for role, user in users.items()},
        message_id=str(message.message_id),
    )


def check_reply(endpoint: str, frame: Any, sent_id: Any) -> None:
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
    if "timestamp" in frame:
        assert ISO.match(frame["timestamp"]), frame
    if frame["type"] != "error":
        assert frame["type"] in SERVER_TYPES[endpoint] | COMMON_TYPES, frame
        return
    assert frame["code"] in DOCUMENTED_CODES, frame
    assert isinstance(frame["message"], str) and frame["message"], frame
    assert not LEAKS.search(frame["message"]), frame
    details = frame.get("details")
    if isinstance(details, list):  # schema problems: field names and pydantic's wording only
        for item in details:
            assert set(item) == {"field", "problem"} and not LEAKS.search(item["problem"]), frame
    if "id" in frame and sent_id is not None:
        assert frame["id"] == sent_id, (frame, sent_id)


class Session:
    """One open connection per role, reused by every example of a test."""

    def __init__(self, endpoint: str, world: World) -> None:
        self.endpoint = endpoint
        self.world = world
        self.clients: dict[str, Client] = {}
        self.probes = 0

    async def client(self, role: str) -> Client:
        if role not in self.clients:
            token = None if role == "anonymous" else self.world.tokens[role]
            self.clients[role] = await connect(f"/ws/{self.endpoint}", token)
        return self.clients[role]

    async def exchange(self, role: str, kind: str, payload: str | bytes) -> list[dict[str, Any]]:
        """Send one frame, then a ping; return everything that came before the pong."""
        client = await self.client(role)
        # Straight to the application: the communicator's helpers refuse empty frames.
        key = "bytes" if kind == "bytes" else "text"
        await client.communicator.send_input({"type": "websocket.receive", key: payload})
        self.probes += 1
        probe = f"probe-{self.probes}"
        await client.send({"type": "ping", "id": probe})
        replies = []
        while True:
            frame = await client.recv(timeout=5)  # a closed connection raises here
            if frame.get("type") == "pong" and frame.get("id") == probe:
                return replies
            replies.append(frame)
            if frame.get("type") == "combat_state" and "combat_session_id" in frame:
                self.world.session_id = frame["combat_session_id"]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


def sent_id_of(kind: str, payload: str | bytes) -> Any:
    if kind != "text":
        return None
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return value.get("id") if isinstance(value, dict) else None


@pytest.fixture
async def sessions():
    """Connections shared by the examples of one test, closed at its end."""
    opened: dict[str, Session] = {}
    yield opened
    for session in opened.values():
        await session.close()


def fuzz(endpoint: str):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    async def test(fuzz_settings, sessions, caplog, data):
        if endpoint not in sessions:
            sessions[endpoint] = Session(endpoint, await make_world())
        session = sessions[endpoint]
        role = data.draw(st.sampled_from(ROLES[endpoint]), label="role")
        for kind, payload in data.draw(st.lists(frames(endpoint, session.world), min_size=1, max_size=3), "frames"):
            for reply in await session.exchange(role, kind, payload):
                check_reply(endpoint, reply, sent_id_of(kind, payload))
                event(f"{reply['type']} {reply.get('code', '')}".strip())  # --hypothesis-show-statistics
        crashes = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("realtime")]
        assert not crashes, [r.getMessage() for r in crashes]

    return test


test_game_frames = fuzz("game")
test_chat_frames = fuzz("chat")
test_combat_frames = fuzz("combat")
test_world_frames = fuzz("world")
