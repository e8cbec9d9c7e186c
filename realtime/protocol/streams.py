"""Stream names on the wire and the `resume` frame (docs/protocol.md §12).

A recoverable stream is the ordered sequence of frames one group receives: each frame carries
the stream's name, a gap-free `offset` and the stream's `epoch`. The names are binding:

| stream | group | frames |
|---|---|---|
| `chat:global` | `chat.global` | global `chat_message`, `moderation_event` |
| `chat:guild:<id>`, `chat:party:<id>` | `chat.guild.<id>`, `chat.party.<id>` | that group's `chat_message` |
| `game` | `game.all` | `system_announcement`, `game_state` |
| `world:<zone>` | `world.zone.<zone>` | `world_event` for that zone, and those with `zone` null |
| `combat:<session>` | `combat.session.<session>` | every frame sent to the fight's participants |
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Annotated, NamedTuple

from pydantic import ConfigDict, Field, StringConstraints

from realtime import groups
from realtime.protocol import ClientFrame

GAME = "game"
# What a stream name may look like; anything else is `unknown_stream` without a second look.
STREAM_NAME = re.compile(
    r"^(chat:global|game|chat:(guild|party):[0-9a-f-]{36}|world:[a-z0-9_-]{1,64}|combat:[0-9a-f-]{36})$"
)
MAX_RESUMED_STREAMS = 16


def chat_global() -> str:
    return "chat:global"


def chat_scope(scope: str, scope_id: object) -> str:
    """`chat:guild:<id>` or `chat:party:<id>`."""
    return f"chat:{scope}:{scope_id}"


def world(zone: str) -> str:
    return f"world:{zone}"


def combat(session_id: object) -> str:
    return f"combat:{session_id}"


class StreamName(NamedTuple):
    """A stream name taken apart: `kind` chat, game, world or combat; `key` the rest."""

    name: str
    kind: str
    key: str

    @property
    def group(self) -> str:
        """The group whose frames make the stream."""
        if self.kind == "game":
            return groups.game_all()
        if self.kind == "world":
            return groups.zone(self.key)
        if self.kind == "combat":
            return groups.combat_session(self.key)
        if self.key == "global":
            return groups.chat_global()
        scope, _, scope_id = self.key.partition(":")
        return groups.membership("chat", scope, scope_id)


def parse(name: str) -> StreamName | None:
    """The parts of a well-formed stream name, or None."""
    if not isinstance(name, str) or not STREAM_NAME.match(name):
        return None
    kind, _, key = name.partition(":")
    if kind in ("combat", "chat") and key != "global":
        scope_id = key.rpartition(":")[2]
        try:
            if str(uuid.UUID(scope_id)) != scope_id:
                return None  # one spelling per stream: the canonical one
        except ValueError:
            return None
    return StreamName(name, kind, key)


_GROUP_STREAMS = (
    ("chat.global", lambda rest: "chat:global"),
    ("game.all", lambda rest: GAME),
    ("chat.guild.", lambda rest: f"chat:guild:{rest}"),
    ("chat.party.", lambda rest: f"chat:party:{rest}"),
    ("world.zone.", lambda rest: f"world:{rest}"),
    ("combat.session.", lambda rest: f"combat:{rest}"),
)


def stream_of(group: str) -> str | None:
    """The stream a group's broadcasts make, if they make one (`user.<id>`, cells: none)."""
    for prefix, name in _GROUP_STREAMS:
        if group == prefix or (prefix.endswith(".") and group.startswith(prefix)):
            return name(group[len(prefix) :])
    return None


def streams_of(groups: Iterable[str]) -> list[str]:
    return [name for group in groups if (name := stream_of(group)) is not None]


class StreamPositionIn(ClientFrame):
    offset: Annotated[int, Field(ge=0)]
    epoch: Annotated[str, StringConstraints(max_length=64)]


class ResumeIn(ClientFrame):
    """Replay what was missed of these streams; send it first, right after `connection_established`.

    `{"type": "resume", "streams": {"<name>": {"offset": <last seen>, "epoch": "…"}}}`
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"type": "resume", "id": "r1", "streams": {"chat:global": {"offset": 1835, "epoch": "9c2f0a6d1e44"}}}
            ]
        }
    )

    streams: Annotated[
        dict[Annotated[str, StringConstraints(max_length=120)], StreamPositionIn], Field(max_length=MAX_RESUMED_STREAMS)
    ]
