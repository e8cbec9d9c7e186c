"""The Lua scripts of the Redis store: each multi-key update runs as one atomic script.

Keys are those listed in `redis.py`; every script takes the key prefix as an argument where it
computes keys from others (which is why Redis Cluster is not supported; Sentinel is).
"""

# KEYS[1] presence:<user>, KEYS[2] instance-conns:<instance>; ARGV: connection, "<instance>|<endpoint>",
# user, cap (0: none). Returns the user's connection count, negated when the cap refused it.
OPEN = """
local count = redis.call('HLEN', KEYS[1])
local cap = tonumber(ARGV[4])
if cap > 0 and count >= cap and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -count end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return redis.call('HLEN', KEYS[1])
"""

# Several OPENs in one call. KEYS[1] instance-conns:<instance>; ARGV[1] presence key prefix,
# ARGV[2] instance, then (connection, user, endpoint, cap) per connection. Returns, per
# connection, OPEN's answer: its user's connection count, negative when over the cap.
OPEN_MANY = """
local P, instance, out = ARGV[1], ARGV[2], {}
for i = 3, #ARGV, 4 do
  local conn, user, cap = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 3])
  local key = P .. user
  local count = redis.call('HLEN', key)
  if cap > 0 and count >= cap and redis.call('HEXISTS', key, conn) == 0 then
    out[#out + 1] = -count
  else
    redis.call('HSET', key, conn, instance .. '|' .. ARGV[i + 2])
    redis.call('HSET', KEYS[1], conn, user)
    out[#out + 1] = redis.call('HLEN', key)
  end
end
return out
"""

CLOSE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('HLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[3]) end
return left
"""

# KEYS[1] instance-conns hash; ARGV[1] presence key prefix; ARGV[2] status key prefix.
PURGE = """
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
REFRESH = """
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

HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return 0 end
return 1
"""

# Shared by the position scripts: visit the users in the cells within `span` of (cx, cy),
# each cell once (`seen`), skipping `skip`.
LUA_SCAN = """
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
POS_ENTER = (
    LUA_SCAN
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
POS_MOVE = (
    LUA_SCAN
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
POS_REMOVE = """
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
POS_NEAR = (
    LUA_SCAN
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
POS_PURGE = """
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
