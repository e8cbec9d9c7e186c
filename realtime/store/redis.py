"""Shared state in Redis, for several instances. Multi-key updates are Lua scripts, so atomic.

Keys (prefix `rpgrt:`):
  presence:<user>          hash  connection id -> "<instance>|<endpoint>"
  instance-conns:<inst>    hash  connection id -> user id      (to purge a dead instance)
  status:<user>            string chosen status (away/busy), gone when the user goes offline
  rl:<key>                 counter of a fixed rate-limit window
  claim:<key>              once-only claim with a TTL
  pos:<user>               hash  zone, x, y, username, instance, cell
  cell:<zone>:<cx>:<cy>    set   users in one area-of-interest cell
  instance-pos:<inst>      set   users whose position an instance holds
Scripts touch keys they compute from others, so Redis Cluster is not supported (Sentinel is).
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from realtime.groups import cell_of
from realtime.store import Position, PresenceChange, SharedState

PREFIX = "rpgrt:"

_OPEN = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return redis.call('HLEN', KEYS[1])
"""

_CLOSE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[3]) end
return left
"""

# KEYS[1] instance-conns hash; ARGV[1] presence key prefix; ARGV[2] status key prefix.
_PURGE = """
local pairs = redis.call('HGETALL', KEYS[1])
local offline = {}
for i = 1, #pairs, 2 do
  local key = ARGV[1] .. pairs[i + 1]
  redis.call('HDEL', key, pairs[i])
  if redis.call('HLEN', key) == 0 then
    redis.call('DEL', ARGV[2] .. pairs[i + 1])
    table.insert(offline, pairs[i + 1])
  end
end
redis.call('DEL', KEYS[1])
return offline
"""

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return 0 end
return 1
"""

# KEYS[1] pos:<user>; KEYS[2] new cell set; KEYS[3] instance-pos set.
# ARGV: user, zone, x, y, username, instance, cell key, cell key prefix
_POS_SET = """
local old = redis.call('HMGET', KEYS[1], 'zone', 'x', 'y', 'username', 'instance', 'cell')
if old[6] and old[6] ~= ARGV[7] then redis.call('SREM', old[6], ARGV[1]) end
if old[5] and old[5] ~= ARGV[6] then redis.call('SREM', ARGV[8] .. old[5], ARGV[1]) end
redis.call('HSET', KEYS[1], 'zone', ARGV[2], 'x', ARGV[3], 'y', ARGV[4], 'username', ARGV[5],
           'instance', ARGV[6], 'cell', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return old
"""

_POS_REMOVE = """
local old = redis.call('HMGET', KEYS[1], 'zone', 'x', 'y', 'username', 'instance', 'cell')
if old[6] then redis.call('SREM', old[6], ARGV[1]) end
if old[5] then redis.call('SREM', ARGV[2] .. old[5], ARGV[1]) end
redis.call('DEL', KEYS[1])
return old
"""

# KEYS[1] instance-pos set; ARGV[1] pos key prefix
_POS_PURGE = """
local users = redis.call('SMEMBERS', KEYS[1])
local gone = {}
for _, user in ipairs(users) do
  local key = ARGV[1] .. user
  local old = redis.call('HMGET', key, 'zone', 'x', 'y', 'username', 'instance', 'cell')
  if old[5] == ARGV[2] then
    if old[6] then redis.call('SREM', old[6], user) end
    redis.call('DEL', key)
    table.insert(gone, {user, old[1], old[2], old[3], old[4]})
  end
end
redis.call('DEL', KEYS[1])
return gone
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _position(user_id: str, fields: list[Any]) -> Position | None:
    if not fields or fields[0] is None:
        return None
    return Position(user_id, _text(fields[3]), _text(fields[0]), float(fields[1]), float(fields[2]))


class RedisSharedState(SharedState):
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self._open = client.register_script(_OPEN)
        self._close = client.register_script(_CLOSE)
        self._purge = client.register_script(_PURGE)
        self._hit = client.register_script(_HIT)
        self._pos_set = client.register_script(_POS_SET)
        self._pos_remove = client.register_script(_POS_REMOVE)
        self._pos_purge = client.register_script(_POS_PURGE)

    @classmethod
    def from_settings(cls, config: dict[str, Any]) -> RedisSharedState:
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

    async def connection_opened(self, *, user_id, connection_id, endpoint, instance_id) -> PresenceChange:
        count = await self._open(
            keys=[f"{PREFIX}presence:{user_id}", f"{PREFIX}instance-conns:{instance_id}"],
            args=[connection_id, f"{instance_id}|{endpoint}", user_id],
        )
        return PresenceChange(user_id, int(count))

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

    async def refresh_instance(self, instance_id, connections) -> None:
        if not connections:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for connection_id, (user_id, endpoint) in connections.items():
                pipe.hset(f"{PREFIX}presence:{user_id}", connection_id, f"{instance_id}|{endpoint}")
                pipe.hset(f"{PREFIX}instance-conns:{instance_id}", connection_id, user_id)
            await pipe.execute()

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

    async def position_set(self, position, *, instance_id, cell_size) -> Position | None:
        cx, cy = cell_of(position.x, position.y, cell_size)
        cell_key = f"{PREFIX}cell:{position.zone}:{cx}:{cy}"
        old = await self._pos_set(
            keys=[f"{PREFIX}pos:{position.user_id}", cell_key, f"{PREFIX}instance-pos:{instance_id}"],
            args=[
                position.user_id,
                position.zone,
                repr(position.x),
                repr(position.y),
                position.username,
                instance_id,
                cell_key,
                f"{PREFIX}instance-pos:",
            ],
        )
        return _position(position.user_id, old)

    async def position_remove(self, user_id) -> Position | None:
        old = await self._pos_remove(keys=[f"{PREFIX}pos:{user_id}"], args=[user_id, f"{PREFIX}instance-pos:"])
        return _position(user_id, old)

    async def position_get(self, user_id) -> Position | None:
        fields = await self.redis.hmget(f"{PREFIX}pos:{user_id}", "zone", "x", "y", "username")
        return _position(user_id, fields)

    async def positions_near(self, zone, x, y, radius, cell_size) -> list[Position]:
        span = max(1, math.ceil(radius / cell_size))
        cx, cy = cell_of(x, y, cell_size)
        cells = [
            f"{PREFIX}cell:{zone}:{i}:{j}"
            for i in range(cx - span, cx + span + 1)
            for j in range(cy - span, cy + span + 1)
        ]
        users = [_text(u) for u in await self.redis.sunion(cells)]
        if not users:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                pipe.hmget(f"{PREFIX}pos:{user_id}", "zone", "x", "y", "username")
            rows = await pipe.execute()
        near = []
        for user_id, fields in zip(users, rows, strict=True):
            position = _position(user_id, fields)
            if position and position.zone == zone and math.hypot(position.x - x, position.y - y) <= radius:
                near.append(position)
        return near

    async def purge_instance_positions(self, instance_id) -> list[Position]:
        rows = await self._pos_purge(keys=[f"{PREFIX}instance-pos:{instance_id}"], args=[f"{PREFIX}pos:", instance_id])
        return [
            Position(_text(user), _text(name), _text(zone), float(x), float(y))
            for user, zone, x, y, name in rows
            if zone is not None
        ]

    # --- health --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
