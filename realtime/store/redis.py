"""The store in Redis, for several instances. Multi-key updates are Lua scripts, so atomic.

Keys (prefix `rpgrt:`):
  presence:<user>          hash  connection id -> "<instance>|<endpoint>"
  instance-conns:<inst>    hash  connection id -> user id      (to purge a dead instance)
  status:<user>            string chosen status (away/busy), gone when the user goes offline
  rl:<key>                 counter of a fixed rate-limit window
  claim:<key>              once-only claim with a TTL
  pos:<user>               hash  zone, x, y, username, instance, conn (the owning connection), cx, cy
  cell:<zone>:<cx>:<cy>    set   users whose position lies in one area-of-interest cell
  instance-pos:<inst>      set   users whose position an instance holds
  left:<user>              string "zone|x|y|username" where the player left the world (WORLD_RESUME_SECONDS)
Scripts touch keys they compute from others, so Redis Cluster is not supported (Sentinel is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

import realtime.store.redis_scripts as scripts
from realtime.store.base import MoveOutcome, MoveStatus, Opening, Position, PresenceChange, PresenceRefresh, Store

PREFIX = "rpgrt:"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _position(user_id: str, fields: list[Any] | None) -> Position | None:
    """From [zone, x, y, username] as the scripts return them."""
    if not fields or fields[0] is None:
        return None
    return Position(user_id, _text(fields[3]), _text(fields[0]), float(fields[1]), float(fields[2]))


def _nearby(zone: str, rows: list[Any]) -> list[Position]:
    """From {{user, username, x, y}, ...} as the scripts return them."""
    return [Position(_text(user), _text(name), zone, float(x), float(y)) for user, name, x, y in rows]


class RedisStore(Store):
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._open = client.register_script(scripts.OPEN)
        self._open_many = client.register_script(scripts.OPEN_MANY)
        self._close = client.register_script(scripts.CLOSE)
        self._purge = client.register_script(scripts.PURGE)
        self._hit = client.register_script(scripts.HIT)
        self._refresh = client.register_script(scripts.REFRESH)
        self._pos_enter = client.register_script(scripts.POS_ENTER)
        self._pos_move = client.register_script(scripts.POS_MOVE)
        self._pos_remove = client.register_script(scripts.POS_REMOVE)
        self._pos_near = client.register_script(scripts.POS_NEAR)
        self._pos_purge = client.register_script(scripts.POS_PURGE)

    @classmethod
    def from_settings(cls, config: dict[str, Any]) -> RedisStore:
        common = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 15}
        if config["sentinels"]:
            sentinel_kwargs = dict(common)  # given explicitly, they replace the timeouts below
            if config.get("sentinel_password"):
                sentinel_kwargs["password"] = config["sentinel_password"]
            sentinel = Sentinel(
                config["sentinels"],
                sentinel_kwargs=sentinel_kwargs,
                password=config["password"],
                db=config["db"],
                **common,
            )
            client = sentinel.master_for(config["sentinel_master"], max_connections=config["max_connections"])
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                config["url"],
                password=config["password"],
                max_connections=config["max_connections"],
                timeout=5,  # wait for a free connection instead of failing at once
                **common,
            )
            client = aioredis.Redis(connection_pool=pool)
        return cls(client)

    # --- presence ------------------------------------------------------------------------------

    async def connection_opened(self, *, user_id, connection_id, endpoint, instance_id, cap=0) -> PresenceChange:
        count = int(
            await self._open(
                keys=[f"{PREFIX}presence:{user_id}", f"{PREFIX}instance-conns:{instance_id}"],
                args=[connection_id, f"{instance_id}|{endpoint}", user_id, int(cap)],
            )
        )
        return PresenceChange(user_id, abs(count), admitted=count > 0)

    async def connections_opened(self, instance_id: str, openings: Sequence[Opening]) -> list[PresenceChange]:
        args: list[Any] = [f"{PREFIX}presence:", instance_id]
        for opening in openings:
            args += [opening.connection_id, opening.user_id, opening.endpoint, int(opening.cap)]
        counts = await self._open_many(keys=[f"{PREFIX}instance-conns:{instance_id}"], args=args)
        return [
            PresenceChange(opening.user_id, abs(int(count)), admitted=int(count) > 0)
            for opening, count in zip(openings, counts, strict=True)
        ]

    async def connection_closed(self, *, user_id, connection_id, instance_id) -> PresenceChange:
        count = await self._close(
            keys=[
                f"{PREFIX}presence:{user_id}",
                f"{PREFIX}instance-conns:{instance_id}",
                f"{PREFIX}status:{user_id}",
            ],
            args=[connection_id],
        )
        return PresenceChange(user_id, int(count))

    async def user_endpoints(self, user_id) -> dict[str, int]:
        counts: dict[str, int] = {}
        for value in (await self.redis.hgetall(f"{PREFIX}presence:{user_id}")).values():
            endpoint = _text(value).rpartition("|")[2]
            counts[endpoint] = counts.get(endpoint, 0) + 1
        return counts

    async def purge_instance(self, instance_id) -> list[str]:
        offline = await self._purge(
            keys=[f"{PREFIX}instance-conns:{instance_id}"],
            args=[f"{PREFIX}presence:", f"{PREFIX}status:"],
        )
        return list(dict.fromkeys(_text(u) for u in offline))

    async def refresh_instance(self, instance_id, connections, *, gone=None) -> PresenceRefresh:
        args: list[Any] = [f"{PREFIX}presence:", f"{PREFIX}status:", instance_id, len(connections)]
        for connection_id, (user_id, endpoint) in connections.items():
            args += [connection_id, user_id, endpoint]
        for connection_id, user_id in (gone or {}).items():
            args += [connection_id, user_id]
        offline, strays = await self._refresh(keys=[f"{PREFIX}instance-conns:{instance_id}"], args=args)
        pairs = [_text(value) for value in strays]
        return PresenceRefresh(
            tuple(dict.fromkeys(_text(user) for user in offline)), dict(zip(pairs[::2], pairs[1::2], strict=True))
        )

    async def presence_instances(self) -> dict[str, int]:
        prefix = f"{PREFIX}instance-conns:"
        keys = [_text(key) async for key in self.redis.scan_iter(match=f"{prefix}*", count=500)]
        if not keys:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hlen(key)
            sizes = await pipe.execute()
        return {key[len(prefix) :]: int(size) for key, size in zip(keys, sizes, strict=True) if size}

    async def set_status(self, user_id, status) -> None:
        key = f"{PREFIX}status:{user_id}"
        if status is None:
            await self.redis.delete(key)
        else:
            await self.redis.set(key, status)

    async def get_status(self, user_id) -> str | None:
        value = await self.redis.get(f"{PREFIX}status:{user_id}")
        return _text(value) if value is not None else None

    # --- counters and claims -------------------------------------------------------------------

    async def hit(self, key, limit, window) -> bool:
        return bool(await self._hit(keys=[f"{PREFIX}rl:{key}"], args=[limit, max(1, int(window * 1000))]))

    async def claim(self, key, ttl) -> bool:
        return bool(await self.redis.set(f"{PREFIX}claim:{key}", 1, nx=True, px=max(1, int(ttl * 1000))))

    # --- positions -----------------------------------------------------------------------------

    async def position_enter(self, position, *, connection_id, instance_id, radius, cell_size):
        previous, near = await self._pos_enter(
            keys=[f"{PREFIX}pos:{position.user_id}", f"{PREFIX}instance-pos:{instance_id}"],
            args=[
                position.user_id,
                position.zone,
                repr(float(position.x)),
                repr(float(position.y)),
                position.username,
                instance_id,
                connection_id,
                repr(float(radius)),
                repr(float(cell_size)),
                PREFIX,
            ],
        )
        return _position(position.user_id, previous), _nearby(position.zone, near)

    async def position_move(
        self, position, *, connection_id, radius, cell_size, max_step, rate_limit, rate_window
    ) -> MoveOutcome:
        user_id = position.user_id
        reply = await self._pos_move(
            keys=[f"{PREFIX}pos:{user_id}", f"{PREFIX}rl:move:{user_id}"],
            args=[
                user_id,
                connection_id,
                position.zone,
                repr(float(position.x)),
                repr(float(position.y)),
                repr(float(radius)),
                repr(float(cell_size)),
                repr(float(max_step)),
                int(rate_limit),
                max(1, int(rate_window * 1000)),
                PREFIX,
            ],
        )
        status = MoveStatus(_text(reply[0]))
        previous = _position(user_id, reply[1]) if len(reply) > 1 else None
        if status is not MoveStatus.MOVED:
            return MoveOutcome(status, previous)
        return MoveOutcome(
            status, previous, tuple(_nearby(position.zone, reply[2])), tuple(_text(user) for user in reply[3])
        )

    async def position_remove(self, user_id, *, connection_id=None) -> Position | None:
        old = await self._pos_remove(keys=[f"{PREFIX}pos:{user_id}"], args=[user_id, connection_id or "", PREFIX])
        return _position(user_id, old)

    async def position_get(self, user_id) -> Position | None:
        fields = await self.redis.hmget(f"{PREFIX}pos:{user_id}", "zone", "x", "y", "username")
        return _position(user_id, fields)

    async def positions_near(self, zone, x, y, radius, cell_size) -> list[Position]:
        rows = await self._pos_near(
            args=[zone, repr(float(x)), repr(float(y)), repr(float(radius)), repr(float(cell_size)), PREFIX]
        )
        return _nearby(zone, rows)

    async def positions_held(self, instance_id) -> set[str]:
        return {_text(user) for user in await self.redis.smembers(f"{PREFIX}instance-pos:{instance_id}")}

    async def purge_instance_positions(self, instance_id) -> list[Position]:
        rows = await self._pos_purge(keys=[f"{PREFIX}instance-pos:{instance_id}"], args=[PREFIX, instance_id])
        return [
            Position(_text(user), _text(name), _text(zone), float(x), float(y))
            for user, zone, x, y, name in rows
            if zone is not None
        ]

    async def position_remember(self, position, ttl) -> None:
        value = "|".join([position.zone, repr(float(position.x)), repr(float(position.y)), position.username])
        await self.redis.set(f"{PREFIX}left:{position.user_id}", value, px=max(1, int(ttl * 1000)))

    async def position_recall(self, user_id) -> Position | None:
        value = await self.redis.getdel(f"{PREFIX}left:{user_id}")
        if value is None:
            return None
        zone, x, y, username = _text(value).split("|", 3)
        return Position(user_id, username, zone, float(x), float(y))

    # --- health --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
