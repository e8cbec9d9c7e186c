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
Scripts touch keys they compute from others, so Redis Cluster is not supported (Sentinel is).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from realtime.store.base import MoveOutcome, MoveStatus, Position, PresenceChange, PresenceRefresh, Store

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

# Reconcile an instance's presence. KEYS[1] instance-conns:<instance>.
# ARGV: presence prefix, status prefix, instance, n, then n × (connection, user, endpoint) to
# re-assert, then (connection, user) pairs of connections that are gone.
# Returns {users left with no connection, {connection, user, ...} entries not re-asserted}.
_REFRESH = """
local P, S, instance, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local live, i = {}, 5
for _ = 1, n do
  live[ARGV[i]] = true
  redis.call('HSET', P .. ARGV[i + 1], ARGV[i], instance .. '|' .. ARGV[i + 2])
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 3
end
local offline = {}
while i < #ARGV do
  local conn, user = ARGV[i], ARGV[i + 1]
  if not live[conn] then
    redis.call('HDEL', P .. user, conn)
    redis.call('HDEL', KEYS[1], conn)
    if redis.call('HLEN', P .. user) == 0 then
      redis.call('DEL', S .. user)
      offline[#offline + 1] = user
    end
  end
  i = i + 2
end
local strays = {}
local held = redis.call('HGETALL', KEYS[1])
for j = 1, #held, 2 do
  if not live[held[j]] then
    strays[#strays + 1] = held[j]
    strays[#strays + 1] = held[j + 1]
  end
end
return {offline, strays}
"""

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return 0 end
return 1
"""

# Shared by the position scripts: visit the users in the cells within `span` of (cx, cy),
# each cell once (`seen`), skipping `skip`.
_LUA_SCAN = """
local function scan(cells, cx, cy, span, seen, skip, visit)
  for i = cx - span, cx + span do
    for j = cy - span, cy + span do
      local key = cells .. i .. ':' .. j
      if not seen[key] then
        seen[key] = true
        for _, other in ipairs(redis.call('SMEMBERS', key)) do
          if other ~= skip then visit(other) end
        end
      end
    end
  end
end
"""

# A zone change. KEYS[1] pos:<user>; KEYS[2] instance-pos:<instance>.
# ARGV: user, zone, x, y, username, instance, connection, radius, cell size, key prefix.
# Returns {previous or nil, {{user, username, x, y}, ...} within the radius of the new spot}.
_POS_ENTER = (
    _LUA_SCAN
    + """
local user, zone, P = ARGV[1], ARGV[2], ARGV[10]
local old = redis.call('HMGET', KEYS[1], 'zone', 'x', 'y', 'username', 'instance', 'cx', 'cy')
if old[1] then
  redis.call('SREM', P .. 'cell:' .. old[1] .. ':' .. old[6] .. ':' .. old[7], user)
  if old[5] ~= ARGV[6] then redis.call('SREM', P .. 'instance-pos:' .. old[5], user) end
end
local x, y, radius, size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[8]), tonumber(ARGV[9])
local cx, cy = math.floor(x / size), math.floor(y / size)
redis.call('HSET', KEYS[1], 'zone', zone, 'x', ARGV[3], 'y', ARGV[4], 'username', ARGV[5],
           'instance', ARGV[6], 'conn', ARGV[7], 'cx', tostring(cx), 'cy', tostring(cy))
local cells = P .. 'cell:' .. zone .. ':'
redis.call('SADD', cells .. cx .. ':' .. cy, user)
redis.call('SADD', KEYS[2], user)
local near = {}
scan(cells, cx, cy, math.max(1, math.ceil(radius / size)), {}, user, function(other)
  local p = redis.call('HMGET', P .. 'pos:' .. other, 'x', 'y', 'username')
  if p[1] then
    local dx, dy = tonumber(p[1]) - x, tonumber(p[2]) - y
    if dx * dx + dy * dy <= radius * radius then near[#near + 1] = {other, p[3], p[1], p[2]} end
  end
end)
local previous = false
if old[1] then previous = {old[1], old[2], old[3], old[4]} end
return {previous, near}
"""
)

# A move. KEYS[1] pos:<user>; KEYS[2] rl:move:<user>.
# ARGV: user, connection, zone, x, y, radius, cell size, max step, rate limit, window ms, key prefix.
# Returns {status, previous, entered {{user, username, x, y}, ...}, left {user, ...}}.
_POS_MOVE = (
    _LUA_SCAN
    + """
local limit = tonumber(ARGV[9])
if limit > 0 then
  local count = redis.call('INCR', KEYS[2])
  if count == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[10]) end
  if count > limit then return {'rate_limited'} end
end
local user, zone, P = ARGV[1], ARGV[3], ARGV[11]
local old = redis.call('HMGET', KEYS[1], 'zone', 'x', 'y', 'username', 'conn', 'cx', 'cy')
if not old[1] then return {'not_in_zone'} end
local previous = {old[1], old[2], old[3], old[4]}
if old[1] ~= zone then return {'not_in_zone', previous} end
if old[5] ~= ARGV[2] then return {'not_owner', previous} end
local ox, oy = tonumber(old[2]), tonumber(old[3])
local x, y = tonumber(ARGV[4]), tonumber(ARGV[5])
local step = tonumber(ARGV[8])
if (x - ox) * (x - ox) + (y - oy) * (y - oy) > step * step then return {'too_far', previous} end
local radius, size = tonumber(ARGV[6]), tonumber(ARGV[7])
local cx, cy = math.floor(x / size), math.floor(y / size)
local ocx, ocy = tonumber(old[6]), tonumber(old[7])
local cells = P .. 'cell:' .. zone .. ':'
if cx ~= ocx or cy ~= ocy then
  redis.call('SREM', cells .. old[6] .. ':' .. old[7], user)
  redis.call('SADD', cells .. cx .. ':' .. cy, user)
end
redis.call('HSET', KEYS[1], 'x', ARGV[4], 'y', ARGV[5], 'cx', tostring(cx), 'cy', tostring(cy))
local r2 = radius * radius
local entered, left, seen = {}, {}, {}
local function visit(other)
  local p = redis.call('HMGET', P .. 'pos:' .. other, 'x', 'y', 'username')
  if p[1] then
    local px, py = tonumber(p[1]), tonumber(p[2])
    local was = (px - ox) * (px - ox) + (py - oy) * (py - oy) <= r2
    local now = (px - x) * (px - x) + (py - y) * (py - y) <= r2
    if now and not was then entered[#entered + 1] = {other, p[3], p[1], p[2]}
    elseif was and not now then left[#left + 1] = other end
  end
end
local span = math.max(1, math.ceil(radius / size))
scan(cells, cx, cy, span, seen, user, visit)
scan(cells, ocx, ocy, span, seen, user, visit)
return {'moved', previous, entered, left}
"""
)

# KEYS[1] pos:<user>; ARGV: user, owning connection ('' = any), key prefix.
_POS_REMOVE = """
local P = ARGV[3]
local old = redis.call('HMGET', KEYS[1], 'zone', 'x', 'y', 'username', 'instance', 'conn', 'cx', 'cy')
if not old[1] then return false end
if ARGV[2] ~= '' and old[6] ~= ARGV[2] then return false end
redis.call('SREM', P .. 'cell:' .. old[1] .. ':' .. old[7] .. ':' .. old[8], ARGV[1])
redis.call('SREM', P .. 'instance-pos:' .. old[5], ARGV[1])
redis.call('DEL', KEYS[1])
return {old[1], old[2], old[3], old[4]}
"""

# ARGV: zone, x, y, radius, cell size, key prefix. Returns {{user, username, x, y}, ...}.
_POS_NEAR = (
    _LUA_SCAN
    + """
local zone, P = ARGV[1], ARGV[6]
local x, y, radius, size = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local near = {}
scan(P .. 'cell:' .. zone .. ':', math.floor(x / size), math.floor(y / size),
     math.max(1, math.ceil(radius / size)), {}, false, function(other)
  local p = redis.call('HMGET', P .. 'pos:' .. other, 'x', 'y', 'username')
  if p[1] then
    local dx, dy = tonumber(p[1]) - x, tonumber(p[2]) - y
    if dx * dx + dy * dy <= radius * radius then near[#near + 1] = {other, p[3], p[1], p[2]} end
  end
end)
return near
"""
)

# KEYS[1] instance-pos:<instance>; ARGV: key prefix, instance.
# Returns {{user, zone, x, y, username}, ...} for the positions that instance still owned.
_POS_PURGE = """
local P = ARGV[1]
local gone = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = P .. 'pos:' .. user
  local old = redis.call('HMGET', key, 'zone', 'x', 'y', 'username', 'instance', 'cx', 'cy')
  if old[5] == ARGV[2] then
    redis.call('SREM', P .. 'cell:' .. old[1] .. ':' .. old[6] .. ':' .. old[7], user)
    redis.call('DEL', key)
    gone[#gone + 1] = {user, old[1], old[2], old[3], old[4]}
  end
end
redis.call('DEL', KEYS[1])
return gone
"""


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
        self._open = client.register_script(_OPEN)
        self._close = client.register_script(_CLOSE)
        self._purge = client.register_script(_PURGE)
        self._hit = client.register_script(_HIT)
        self._refresh = client.register_script(_REFRESH)
        self._pos_enter = client.register_script(_POS_ENTER)
        self._pos_move = client.register_script(_POS_MOVE)
        self._pos_remove = client.register_script(_POS_REMOVE)
        self._pos_near = client.register_script(_POS_NEAR)
        self._pos_purge = client.register_script(_POS_PURGE)

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

    # --- health --------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
