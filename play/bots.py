"""Demo bots: players that connect over real WebSockets, walk about, chat, change status and fight.

Each bot is an ordinary client of the public protocol: one `rpgrealtime.client` connection per
endpoint, so the bots follow the rules every client should (docs/clients.md) — the token in a
header, pongs for the server's pings, reconnects with backoff and jitter by close code, a fresh
token after 4401, no retry after 4403, stream recovery after a reconnect. They walk near the
zone's spawn point, where newcomers enter, so a player who logs in sees them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from realtime.features.world.zones import ZoneSpec
from rpgrealtime.client import CloseEvent, RealtimeClient, ServerError, StateEvent

logger = logging.getLogger(__name__)

# Reconnect backoff (full jitter): up to 1 s at first, doubling to at most 30 s.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0

CHAT_LINES = (
    "Anyone seen the dragon lately?",
    "Selling a slightly used goblin ear. Cheap!",
    "The dark forest gives me the creeps.",
    "Nice weather in starter town today.",
    "Who wants to form a party?",
    "I just leveled up my walking skill.",
    "Watch out for wolves past the bridge.",
    "Has anybody found the well's secret?",
    "brb, potion break",
    "Goblins again... they never learn.",
)
GUILD_LINES = (
    "Guild meeting at the fountain?",
    "Need a hand with a troll, anyone?",
    "Remember to share the loot, friends.",
)
STATUS_CHOICES = (("online", 6), ("away", 3), ("busy", 2))
FIGHTS = (("goblin",), ("goblin",), ("wolf",), ("goblin", "goblin"))

Behaviour = Callable[[RealtimeClient], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BotPlan:
    """How bots behave. Intervals are means in seconds; 0 turns a behaviour off."""

    ws_url: str  # ws://host:port, no path
    zone: ZoneSpec
    chat_interval: float = 25.0
    status_interval: float = 45.0
    fight_interval: float = 120.0
    move_hz: float = 4.0  # well under the server's 25 moves a second per user
    step: float = 8.0  # per move: a calm walk of 32 units a second
    wander_radius: float = 80.0  # stay within sight (WORLD_NEARBY_RADIUS) of the spawn point


@dataclass(frozen=True, slots=True)
class BotIdentity:
    user_id: str
    username: str
    in_guild: bool


class DemoBot:
    def __init__(
        self,
        identity: BotIdentity,
        *,
        token: Callable[[], str],
        plan: BotPlan,
        rng: random.Random,
        stop: asyncio.Event,
    ) -> None:
        self.identity = identity
        self.token = token  # a fresh access token on every call
        self.plan = plan
        self.rng = rng
        self.stop = stop
        self.position = (plan.zone.spawn_x, plan.zone.spawn_y)

    @property
    def name(self) -> str:
        return self.identity.username

    async def run(self) -> None:
        behaviours: list[tuple[str, Behaviour, dict[str, Callable[[Any], None]]]] = [
            ("world", self._walk, {"error": self._on_world_error}),
            ("game", self._change_status if self.plan.status_interval else self._idle, {}),
        ]
        if self.plan.chat_interval:
            behaviours.append(("chat", self._chat, {}))
        if self.plan.fight_interval:
            behaviours.append(("combat", self._fight, {}))
        await asyncio.gather(*(self._keep(endpoint, body, handlers) for endpoint, body, handlers in behaviours))

    # --- connection lifecycle -----------------------------------------------------------------

    async def _keep(
        self,
        endpoint: str,
        body: Behaviour,
        handlers: dict[str, Callable[[Any], None]],
    ) -> None:
        """Stay connected to one endpoint until told to stop; the behaviour runs while connected."""
        client = RealtimeClient(
            f"{self.plan.ws_url}/ws/{endpoint}",
            get_token=lambda reason: self.token(),  # signed locally: always a fresh one
            backoff_initial=BACKOFF_INITIAL,
            backoff_max=BACKOFF_MAX,
            connect_timeout=10,
            rng=self.rng.random,
        )
        for event_type, handler in handlers.items():
            client.on(event_type, handler)
        work: asyncio.Task[None] | None = None

        def follow(event: StateEvent) -> None:
            nonlocal work
            if event.state != "open" and work is not None:
                work.cancel()
                work = None
            elif event.state == "open" and work is None:
                logger.info("%s: connected to /ws/%s", self.name, endpoint)
                work = asyncio.create_task(self._behave(endpoint, body, client))

        def closed(event: CloseEvent) -> None:
            if event.action == "stop":
                logger.warning("%s: /ws/%s refused us for good (%s); not reconnecting", self.name, endpoint, event.code)

        client.on("state", follow)
        client.on("close", closed)
        connecting = asyncio.create_task(client.connect())
        try:
            await self.stop.wait()
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            if work is not None:
                work.cancel()
            await client.close()

    async def _behave(self, endpoint: str, body: Behaviour, client: RealtimeClient) -> None:
        try:
            await body(client)
        except ServerError as exc:  # e.g. not_connected: the connection went; the next one restarts this
            logger.info("%s: /ws/%s: %s", self.name, endpoint, exc)
        except Exception:
            logger.exception("%s: /ws/%s behaviour failed", self.name, endpoint)

    async def _pause(self, mean: float) -> None:
        await asyncio.sleep(mean * self.rng.uniform(0.5, 1.5))

    async def _idle(self, client: RealtimeClient) -> None:
        await asyncio.Event().wait()

    # --- behaviours ---------------------------------------------------------------------------

    async def _walk(self, client: RealtimeClient) -> None:
        zone = self.plan.zone
        entered = await client.request({"type": "zone_change", "zone": zone.name})
        self.position = (entered["x"], entered["y"])
        tick = 1.0 / self.plan.move_hz
        while True:
            angle = self.rng.uniform(0, 2 * math.pi)
            reach = self.plan.wander_radius * math.sqrt(self.rng.random())
            goal = zone.clamp(zone.spawn_x + reach * math.cos(angle), zone.spawn_y + reach * math.sin(angle))
            while (distance := math.dist(self.position, goal)) > 0.5:
                ratio = min(1.0, self.plan.step / distance)
                x = self.position[0] + (goal[0] - self.position[0]) * ratio
                y = self.position[1] + (goal[1] - self.position[1]) * ratio
                x, y = self.position = (round(x, 1), round(y, 1))
                await client.send({"type": "player_movement", "zone": zone.name, "x": x, "y": y})
                await asyncio.sleep(tick)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))

    def _on_world_error(self, frame: dict[str, Any]) -> None:
        # A refused step tells where the server has us: resume from there.
        details = frame.get("details")
        if isinstance(details, dict) and isinstance(details.get("x"), int | float):
            self.position = (details["x"], details["y"])

    async def _chat(self, client: RealtimeClient) -> None:
        while True:
            await self._pause(self.plan.chat_interval)
            guild = self.identity.in_guild and self.rng.random() < 0.3
            channel, lines = ("guild", GUILD_LINES) if guild else ("global", CHAT_LINES)
            line = self.rng.choice(lines)
            # Type for a moment first, so watchers see the indicator come and go.
            await client.send({"type": "typing", "channel": channel, "is_typing": True})
            await asyncio.sleep(self.rng.uniform(1.0, 2.5))
            try:
                await client.request({"type": "chat_message", "channel": channel, "content": line})
            except ServerError as exc:
                logger.info("%s: chat refused: %s", self.name, exc)
            await client.send({"type": "typing", "channel": channel, "is_typing": False})

    async def _change_status(self, client: RealtimeClient) -> None:
        statuses, weights = zip(*STATUS_CHOICES, strict=True)
        while True:
            await self._pause(self.plan.status_interval)
            await client.request({"type": "set_status", "status": self.rng.choices(statuses, weights)[0]})

    async def _fight(self, client: RealtimeClient) -> None:
        states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # Every combat_state, replies included (the client hands a reply to its request and to the handlers).
        stop_listening = client.on("combat_state", states.put_nowait)
        try:
            # A fight still running from before a reconnect is resent right after connecting.
            with contextlib.suppress(TimeoutError):
                await self._play(client, states, await asyncio.wait_for(states.get(), 1.0))
            while True:
                await self._pause(self.plan.fight_interval)
                while not states.empty():  # what is left of the last fight
                    states.get_nowait()
                try:
                    await client.request({"type": "combat_start", "monsters": list(self.rng.choice(FIGHTS))})
                except ServerError as exc:
                    running = exc.details.get("combat_session_id") if isinstance(exc.details, dict) else None
                    if not running:
                        logger.info("%s: cannot start a fight: %s", self.name, exc)
                        continue
                    await client.request({"type": "combat_state_request", "combat_session_id": running})
                await self._play(client, states, await states.get())
        finally:
            stop_listening()

    async def _play(self, client: RealtimeClient, states: asyncio.Queue, state: dict[str, Any]) -> None:
        """Attack on every turn of ours until the fight is over for us."""
        while state.get("type") == "combat_state" and state.get("status") == "active":
            me = next((p for p in state["participants"] if p["id"] == self.identity.user_id), None)
            if me is None or not me["alive"]:
                return
            if state["turn"]["actor"] == self.identity.user_id:
                await asyncio.sleep(self.rng.uniform(0.6, 1.5))  # look like someone thinking
                target = next(p["id"] for p in state["participants"] if p["kind"] == "monster" and p["alive"])
                await client.send(
                    {
                        "type": "combat_action",
                        "combat_session_id": state["combat_session_id"],
                        "action": "attack",
                        "target": target,
                        "round": state["round"],
                    }
                )
            state = await states.get()
            while not states.empty():  # act on the newest state only
                state = states.get_nowait()


async def run_bots(
    identities: list[BotIdentity],
    *,
    token_for: Callable[[BotIdentity], str],
    plan: BotPlan,
    stop: asyncio.Event,
    seed: int | None = None,
) -> None:
    """Run the bots until `stop` is set; each bot gets its own random stream."""
    master = random.Random(seed)
    bots = [
        DemoBot(
            identity,
            token=lambda identity=identity: token_for(identity),
            plan=plan,
            rng=random.Random(master.random()),
            stop=stop,
        )
        for identity in identities
    ]
    await asyncio.gather(*(bot.run() for bot in bots))
