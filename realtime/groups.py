"""Group names, built in one place. A group is per endpoint so no delivery needs filtering."""

from __future__ import annotations


def user(user_id: object) -> str:
    """Every connection of one user, on every endpoint and instance (personal messages, control)."""
    return f"user.{user_id}"


def chat_global() -> str:
    return "chat.global"


def game_all() -> str:
    return "game.all"


def world_all() -> str:
    return "world.all"


def membership(endpoint: str, scope: str, scope_id: object) -> str:
    """Guild or party members connected to `endpoint`: `chat.guild.<id>`, `game.party.<id>`."""
    return f"{endpoint}.{scope}.{scope_id}"


def zone(name: str) -> str:
    """Every watcher of a zone (zone-wide world events)."""
    return f"world.zone.{name}"


def zone_cell(name: str, cell_x: int, cell_y: int) -> str:
    """One area-of-interest cell of a zone (movement fan-out)."""
    return f"world.cell.{name}.{cell_x}.{cell_y}"


def combat_session(session_id: object) -> str:
    return f"combat.session.{session_id}"


def instances() -> str:
    """Every server instance (its hub, not its connections): controls that name connections by id."""
    return "cluster.instances"
