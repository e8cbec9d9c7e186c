"""Demo bots: players that connect over real WebSockets, walk about, chat, change status and fight.

Each bot is an ordinary client of the public protocol (docs/protocol.md), one connection per
endpoint, following the rules every client should: the token in a header (native clients),
pongs for the server's pings, exponential backoff with jitter, a fresh token after 4401, no
retry after 4403. They walk near the zone's spawn point, where newcomers enter, so a player
who logs in sees them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import websockets

from realtime.features.world.zones import ZoneSpec

logger = logging.getLogger(__name__)

# Reconnect backoff, as docs/protocol.md recommends: 0.5 s doubling to 30 s, ±50 % jitter.
BACKOFF_INITIAL = 0.5
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


class BotConnection:
    """One WebSocket of a bot: answers pings, hands replies to their request, events to a callback."""

    def __init__(self, ws: Any, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ws = ws
        self.on_event = on_event or (lambda frame: None)
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future] = {}
        self.established: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "ping":
                    await self.ws.send('{"type": "pong"}')
                elif kind == "connection_established" and not self.established.done():
                    self.established.set_result(frame)
                elif (waiter := self._waiting.pop(str(frame.get("id")), None)) is not None:
                    if not waiter.done():
                        waiter.set_result(frame)
                else:
                    self.on_event(frame)
        except websockets.ConnectionClosed:
            pass
        finally:
            for waiter in self._waiting.values():
                waiter.cancel()
            if not self.established.done():
                self.established.cancel()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send with an id and return the first reply carrying it (a result or an `error`)."""
        frame_id = f"b{next(self._ids)}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[frame_id] = waiter
        try:
            await self.send({**frame, "id": frame_id})
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiting.pop(frame_id, None)


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
        behaviours: list[tuple[str, Callable[[BotConnection], Awaitable[None]], Any]] = [
            ("world", self._walk, self._on_world_event),
            ("game", self._change_status if self.plan.status_interval else self._idle, None),
        ]
        if self.plan.chat_interval:
            behaviours.append(("chat", self._chat, None))
        if self.plan.fight_interval:
            behaviours.append(("combat", self._fight, None))
        await asyncio.gather(*(self._keep(endpoint, body, on_event) for endpoint, body, on_event in behaviours))

    # --- connection lifecycle -----------------------------------------------------------------

    async def _keep(self, endpoint: str, body: Callable, on_event: Any) -> None:
        """Stay connected to one endpoint until told to stop, reconnecting as a client should."""
        delay = BACKOFF_INITIAL
        while not self.stop.is_set():
            code, was_established = await self._session(endpoint, body, on_event)
            if self.stop.is_set():
                return
            if code == 4403:
                logger.warning("%s: /ws/%s refused us for good (4403); not reconnecting", self.name, endpoint)
                return
            if was_established:
                delay = BACKOFF_INITIAL
            if code == 4401:
                continue  # the next attempt signs a fresh token
            pause = delay * self.rng.uniform(0.5, 1.5)
            if code == 4429:
                pause = max(pause, 10.0)
            delay = min(delay * 2, BACKOFF_MAX)
            logger.info("%s: /ws/%s closed (%s); reconnecting in %.1f s", self.name, endpoint, code, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), pause)

    async def _session(self, endpoint: str, body: Callable, on_event: Any) -> tuple[int | None, bool]:
        """One connection: returns (close code or None, whether it was established)."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        try:
            async with websockets.connect(
                f"{self.plan.ws_url}/ws/{endpoint}", additional_headers=headers, open_timeout=10, close_timeout=2
            ) as ws:
                conn = BotConnection(ws, on_event)
                # A refused connection gets an `error` and a close instead of connection_established.
                await asyncio.wait({conn.established, conn.closed}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
                if not conn.established.done() or conn.established.cancelled():
                    await ws.close()
                    return ws.close_code, False
                logger.info("%s: connected to /ws/%s", self.name, endpoint)
                work = asyncio.create_task(body(conn))
                stopping = asyncio.create_task(self.stop.wait())
                await asyncio.wait({work, conn.closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (work, stopping):
                    task.cancel()
                (outcome,) = await asyncio.gather(work, return_exceptions=True)
                if isinstance(outcome, Exception) and not isinstance(outcome, websockets.ConnectionClosed):
                    logger.warning("%s: /ws/%s behaviour failed: %r", self.name, endpoint, outcome)
                if self.stop.is_set():
                    await ws.close(1000, "bot stopping")
                    return 1000, True
                await ws.close()
                return ws.close_code, True
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
            logger.info("%s: cannot reach /ws/%s (%s)", self.name, endpoint, exc)
            return None, False

    async def _pause(self, mean: float) -> None:
        await asyncio.sleep(mean * self.rng.uniform(0.5, 1.5))

    async def _idle(self, conn: BotConnection) -> None:
        await asyncio.Event().wait()

    # --- behaviours ---------------------------------------------------------------------------

    async def _walk(self, conn: BotConnection) -> None:
        zone = self.plan.zone
        entered = await conn.request({"type": "zone_change", "zone": zone.name})
        if entered.get("type") != "zone_changed":
            raise RuntimeError(f"zone_change refused: {entered}")
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
                await conn.send({"type": "player_movement", "zone": zone.name, "x": x, "y": y})
                await asyncio.sleep(tick)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))

    def _on_world_event(self, frame: dict[str, Any]) -> None:
        # A refused step tells where the server has us: resume from there.
        details = frame.get("details") if frame.get("type") == "error" else None
        if isinstance(details, dict) and isinstance(details.get("x"), int | float):
            self.position = (details["x"], details["y"])

    async def _chat(self, conn: BotConnection) -> None:
        while True:
            await self._pause(self.plan.chat_interval)
            guild = self.identity.in_guild and self.rng.random() < 0.3
            channel, lines = ("guild", GUILD_LINES) if guild else ("global", CHAT_LINES)
            line = self.rng.choice(lines)
            # Type for a moment first, so watchers see the indicator come and go.
            await conn.send({"type": "typing", "channel": channel, "is_typing": True})
            await asyncio.sleep(self.rng.uniform(1.0, 2.5))
            reply = await conn.request({"type": "chat_message", "channel": channel, "content": line})
            await conn.send({"type": "typing", "channel": channel, "is_typing": False})
            if reply.get("type") == "error":
                logger.info("%s: chat refused: %s", self.name, reply.get("message"))

    async def _change_status(self, conn: BotConnection) -> None:
        statuses, weights = zip(*STATUS_CHOICES, strict=True)
        while True:
            await self._pause(self.plan.status_interval)
            await conn.request({"type": "set_status", "status": self.rng.choices(statuses, weights)[0]})

    async def _fight(self, conn: BotConnection) -> None:
        states: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        conn.on_event = lambda frame: states.put_nowait(frame) if frame.get("type") == "combat_state" else None
        # A fight still running from before a reconnect is resent right after connecting.
        with contextlib.suppress(TimeoutError):
            await self._play(conn, states, await asyncio.wait_for(states.get(), 1.0))
        while True:
            await self._pause(self.plan.fight_interval)
            reply = await conn.request({"type": "combat_start", "monsters": list(self.rng.choice(FIGHTS))})
            if reply.get("type") == "error":
                running = (reply.get("details") or {}).get("combat_session_id")
                if not running:
                    logger.info("%s: cannot start a fight: %s", self.name, reply.get("message"))
                    continue
                reply = await conn.request({"type": "combat_state_request", "combat_session_id": running})
            await self._play(conn, states, reply)

    async def _play(self, conn: BotConnection, states: asyncio.Queue, state: dict[str, Any]) -> None:
        """Attack on every turn of ours until the fight is over for us."""
        while state.get("type") == "combat_state" and state.get("status") == "active":
            me = next((p for p in state["participants"] if p["id"] == self.identity.user_id), None)
            if me is None or not me["alive"]:
                return
            if state["turn"]["actor"] == self.identity.user_id:
                await asyncio.sleep(self.rng.uniform(0.6, 1.5))  # look like someone thinking
                target = next(p["id"] for p in state["participants"] if p["kind"] == "monster" and p["alive"])
                await conn.send(
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
