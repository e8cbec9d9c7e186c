"""What open connections know of their user, kept current from any instance: guild and party
(their groups move live, docs/protocol.md §8), and being closed by a moderator or an operator.

Controls sent with `outbound.send_control(groups.user(id), op, ...)` reach every connection of
the user on every instance; each local connection then runs the handler below.
"""

from __future__ import annotations

from typing import Any

from realtime import groups
from realtime.connection import Connection
from realtime.features import recovery
from realtime.protocol import CloseCode, ErrorCode
from realtime.runtime import Runtime

# Endpoints whose connections follow their user's guild and party: they join
# `<endpoint>.guild.<id>` and `<endpoint>.party.<id>`, moved live on membership changes.
MEMBERSHIP_ENDPOINTS = frozenset({"game", "chat"})
SCOPES = ("guild", "party")


def membership_groups(conn: Connection) -> list[str]:
    """The groups a connection joins for its user: its own, and its guild's and party's."""
    user = conn.user
    if user is None:
        return []
    names = [groups.user(user.id)]
    if conn.endpoint in MEMBERSHIP_ENDPOINTS:
        for scope, scope_id in (("guild", user.guild_id), ("party", user.party_id)):
            if scope_id:
                names.append(groups.membership(conn.endpoint, scope, scope_id))
    return names


def close_control(conn: Connection, message: dict[str, Any]) -> None:
    """`close`: a ban, a kick or an operator's disconnect (error frame first, then the code)."""
    code = message.get("error_code")
    conn.close(int(message.get("code", CloseCode.FORBIDDEN)), ErrorCode(code) if code else None, message.get("message"))


def membership_control(runtime: Runtime, conn: Connection, message: dict[str, Any]) -> None:
    """`membership`: the user joined or left a guild or party; move this connection's groups."""
    scope, new_id = message.get("scope"), message.get("scope_id")
    user = conn.user
    if scope not in SCOPES or user is None:
        return
    new_id = str(new_id) if new_id else None
    old_id = user.guild_id if scope == "guild" else user.party_id
    if old_id == new_id:
        return
    if scope == "guild":
        user.guild_id = new_id
    else:
        user.party_id = new_id
    if conn.endpoint not in MEMBERSHIP_ENDPOINTS:
        return
    if old_id:
        runtime.hub.leave(conn, [groups.membership(conn.endpoint, scope, old_id)])
    if new_id:
        runtime.spawn(_join(runtime, conn, groups.membership(conn.endpoint, scope, new_id)), "membership join")


async def _join(runtime: Runtime, conn: Connection, group: str) -> None:
    await runtime.hub.join(conn, [group])
    await recovery.follow_groups(conn, [group])  # guild and party chat are streams (§12)


def install(runtime: Runtime) -> None:
    runtime.on_control("close", close_control)
    runtime.on_control("membership", lambda conn, message: membership_control(runtime, conn, message))
