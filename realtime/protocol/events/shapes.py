"""The shapes server frames share: timestamps, ids, stream positions, the reply and stream mixins, the
example values of docs/asyncapi.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypeAliasType, TypedDict

from realtime.protocol.streams import STREAM_NAME

# --- shared shapes ------------------------------------------------------------------------------

Timestamp = TypeAliasType(
    "Timestamp",
    Annotated[
        str,
        Field(
            pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
            json_schema_extra={"format": "date-time"},
            description="ISO 8601, UTC, millisecond precision, `Z` suffix.",
        ),
    ],
)
Uuid = TypeAliasType(
    "Uuid",
    Annotated[
        str,
        Field(
            pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            json_schema_extra={"format": "uuid"},
            description="A UUID in canonical lower-case form.",
        ),
    ],
)
FrameId = TypeAliasType(
    "FrameId",
    Annotated[
        Annotated[str, Field(max_length=64)] | int,
        Field(
            description="A client frame's `id` (a string of at most 64 characters, or an integer of at most "
            "64 digits); every direct reply repeats it."
        ),
    ],
)
Endpoint = TypeAliasType("Endpoint", Literal["game", "chat", "combat", "world"])
PlayerStatus = TypeAliasType("PlayerStatus", Literal["online", "away", "busy", "offline"])
ModerationAction = TypeAliasType(
    "ModerationAction", Literal["mute", "unmute", "ban", "unban", "kick", "delete_message"]
)
StreamName = TypeAliasType(
    "StreamName",
    Annotated[
        str,
        Field(pattern=STREAM_NAME.pattern, description="A recoverable stream (docs/protocol.md §12)."),
    ],
)
Coordinate = Annotated[float, Field(description="A position in the zone; integers or decimals.")]


class StreamPosition(TypedDict):
    """Where a stream stands: the offset of its last frame (0: none yet) and its epoch."""

    offset: Annotated[int, Field(ge=0)]
    epoch: str


class StreamRecovered(TypedDict):
    """A stream of `resume` whose missed frames were replayed before `resumed`."""

    recovered: Literal[True]
    missed: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    epoch: str


class StreamNotRecovered(TypedDict):
    """A stream of `resume` that cannot be recovered: re-sync it (or drop it)."""

    recovered: Literal[False]
    reason: Literal["epoch_changed", "too_old", "forbidden", "unknown_stream"]
    offset: Annotated[int, Field(ge=0)]
    epoch: str


class UserRef(TypedDict):
    id: Uuid
    username: str


class FieldProblem(TypedDict):
    """One reason a client frame does not match its schema."""

    field: str
    problem: str


class Participant(TypedDict):
    """A fighter, in turn order."""

    id: Annotated[str, Field(description="A player's user id, or a monster id unique in the fight (`goblin-1`).")]
    kind: Literal["player", "monster"]
    name: str
    hp: Annotated[int, Field(ge=0)]
    max_hp: Annotated[int, Field(ge=1)]
    alive: bool


class Turn(TypedDict):
    actor: Annotated[str | None, Field(description="Whose turn it is; null once the fight is over.")]
    deadline: Annotated[
        Timestamp | None, Field(description="When a player's turn times out; null while a monster acts or when over.")
    ]


class NearbyPlayer(TypedDict):
    user_id: Uuid
    username: str
    x: Coordinate
    y: Coordinate


# Mixins: a direct reply repeats the client frame's `id`; a frame of a recoverable stream carries
# its position as its last fields (docs/protocol.md §12), unless it went out during an outage.


class ReplyMixin(TypedDict):
    id: NotRequired[FrameId]


class PositionedMixin(TypedDict):
    stream: NotRequired[StreamName]
    offset: NotRequired[Annotated[int, Field(ge=1, description="The frame's place in its stream, from 1.")]]
    epoch: NotRequired[Annotated[str, Field(description="The stream's epoch: offsets of another mean nothing.")]]


FrameType = TypeVar("FrameType", bound=type)


def server_frame(example: dict[str, Any], *, published: bool = False) -> Callable[[FrameType], FrameType]:
    """A server frame type: a field it does not list is a mistake, except in the types the publish
    route sends (`published`), which keep the publisher's extra fields (docs/protocol.md §8)."""
    return with_config(ConfigDict(extra="allow" if published else "forbid", json_schema_extra={"examples": [example]}))


T0 = "2026-11-26T10:00:00.000Z"
ALICE = "6b1f7c3e-2a4d-4e8b-9f0a-1c2d3e4f5a6b"
BOB = "0d8e3c1a-5b7f-4c2e-9a64-3f1b2c4d5e6f"
GUILD = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
MESSAGE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FIGHT = "c7a7d0e1-af8b-4639-be66-8f9d5313b04e"
