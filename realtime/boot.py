"""The one place features are wired into the runtime: which features an instance runs, in what order.

Edges (consumers, views, server hooks, commands) get their runtime from here. The order matters
where hooks run in sequence: when an instance is forgotten, presence goes first (so combat sees
the players whose last connection went with it), then world positions, then combat.
"""

from __future__ import annotations

import os

from channels.layers import get_channel_layer

from realtime import runtime as node
from realtime import watchdog
from realtime.features import identity, moderation, offline, presence
from realtime.features.combat import service as combat
from realtime.features.world import movement as world
from realtime.runtime import Runtime
from realtime.store import get_store


def install_features(runtime: Runtime) -> None:
    identity.install(runtime)
    presence.install(runtime)
    offline.install(runtime)
    moderation.install(runtime)
    world.install(runtime)
    combat.install(runtime)
    watchdog.install(runtime)


async def ensure_runtime() -> Runtime:
    """This event loop's runtime, started with every feature on first use."""
    return await node.ensure_runtime(install_features)


def cleanup_runtime() -> Runtime:
    """A runtime that is never started, for commands: it carries the store and the features'
    hooks, so a command forgets a dead instance exactly as a surviving instance would."""
    runtime = Runtime(instance_id=f"cleanup-{os.getpid()}", layer=get_channel_layer(), store=get_store())
    install_features(runtime)
    return runtime
