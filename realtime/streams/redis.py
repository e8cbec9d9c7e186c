"""The stream log in Redis: each stream lives next to its group's pub/sub channel.

channels-redis' pub/sub layer publishes a group's messages on one Redis server (by a hash of
the channel name, when there are several shards: `realtime/shards.py`). A stream is kept on that
same server, so one script can give a frame its offset, keep it and PUBLISH it in the layer's own
message format: one round trip per broadcast, one encoding, and the frames of a stream leave
Redis in offset order. Keys (prefix `rpgrt:`):

  stream:<name>        hash    offset (of the last frame), epoch
  stream:<name>:log    stream  entries `<offset>-1` with fields t (seconds) and f (the frame)

The log is trimmed to RECOVERY_HISTORY_SIZE entries and expires RECOVERY_HISTORY_TTL after the
last frame; the hash expires a day after the last use. A Redis that restarts empty loses both:
the next use mints a new epoch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from channels_redis.utils import create_pool, decode_hosts
from django.conf import settings

from realtime.batching import BatchedLookup
from realtime.protocol.streams import parse as parse_stream
from realtime.shards import LayerShards
from realtime.streams.base import Appended, Kept, Position, StreamLog, new_epoch

PREFIX = "rpgrt:stream:"
# A stream's position is kept this long after its last use (its frames, RECOVERY_HISTORY_TTL).
POSITION_TTL_SECONDS = 24 * 3600

# KEYS: meta hash, log. ARGV: new epoch, size, log ttl ms, position ttl ms, stream, group,
# encoded event, event type, sent at, excluded connection ('' none), pub/sub channel, observer
# ('' none).
# Returns {offset, epoch, frame}.
APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local text = ARGV[7]
local frame = string.sub(text, 1, -2) .. ',"stream":' .. cjson.encode(ARGV[5]) .. ',"offset":' .. offset
  .. ',"epoch":' .. cjson.encode(epoch) .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], offset .. '-1', 't', redis.call('TIME')[1], 'f', frame)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local message = {type = 'rt.event', group = ARGV[6], text = frame, event_type = ARGV[8],
                 sent_at = tonumber(ARGV[9]), stream = ARGV[5], offset = offset}
if ARGV[10] ~= '' then message['exclude_connection'] = ARGV[10] end
if ARGV[12] ~= '' then message['observe'] = ARGV[12] end
redis.call('PUBLISH', ARGV[11], cmsgpack.pack(message))
return {offset, epoch, frame}
"""

# KEYS: meta hash, log. ARGV: new epoch, position ttl ms, after, upto (-1: now).
# Returns {epoch, offset, {{id, {field, value, ...}}, ...}}; starts a stream never used.
KEPT = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {epoch, 0, {}}
end
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local after, upto = tonumber(ARGV[3]), tonumber(ARGV[4])
if upto < 0 or upto > offset then upto = offset end
if after >= upto then return {epoch, offset, {}} end
return {epoch, offset, redis.call('XRANGE', KEYS[2], (after + 1) .. '-1', upto .. '-1')}
"""


# Where several streams stand, starting an epoch for those never used (as KEPT does). KEYS: each
# stream's hash then its log, stream by stream; ARGV[1] a new epoch, ARGV[2] the hash's TTL (ms).
# Returns epoch, offset for each stream.
POSITIONS = """
local out = {}
for i = 1, #KEYS, 2 do
  local epoch = redis.call('HGET', KEYS[i], 'epoch')
  local offset = 0
  if not epoch then
    epoch = ARGV[1]
    redis.call('DEL', KEYS[i + 1])
    redis.call('HSET', KEYS[i], 'epoch', epoch, 'offset', 0)
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    offset = tonumber(redis.call('HGET', KEYS[i], 'offset'))
  end
  out[#out + 1] = epoch
  out[#out + 1] = offset
end
return out
"""


# How long a call waits for a free connection when every one of the pool is busy (a storm).
POOL_WAIT_SECONDS = 5


def _pool(host: dict[str, Any]) -> Any:
    """channels-redis' pool for a layer server, but one that waits for a free connection: its
    own raises "Too many connections" at once, which in a reconnect storm (thousands of resumes
    at the same moment) looked like an outage and sent frames out unnumbered."""
    if "address" in host:
        options = {key: value for key, value in host.items() if key != "address"}
        return aioredis.BlockingConnectionPool.from_url(host["address"], timeout=POOL_WAIT_SECONDS, **options)
    return create_pool(host)  # Sentinel: its own pool class


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamLog(StreamLog):
    def __init__(self, hosts: list[Any], prefix: str) -> None:
        self._layout = LayerShards(count=len(decode_hosts(hosts)), prefix=prefix)
        self._shards = [aioredis.Redis(connection_pool=_pool(host)) for host in decode_hosts(hosts)]
        self._append = [shard.register_script(APPEND) for shard in self._shards]
        self._kept = [shard.register_script(KEPT) for shard in self._shards]
        self._positions = [shard.register_script(POSITIONS) for shard in self._shards]
        # Connects that arrive together read the streams' positions in one call per shard.
        self._batched_positions = BatchedLookup(self._read_positions)
        self._batched_kept = BatchedLookup(self._read_kept_many)

    @classmethod
    def from_settings(cls) -> RedisStreamLog:
        config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
        return cls(config["hosts"], config.get("prefix", "asgi"))

    def _shard(self, group: str) -> int:
        return self._layout.of(group)

    async def append(self, *, stream: str, group: str, text: str, message: dict[str, object]) -> Appended:
        shard = self._shard(group)
        offset, epoch, frame = await self._append[shard](
            keys=[f"{PREFIX}{stream}", f"{PREFIX}{stream}:log"],
            args=[
                new_epoch(),
                settings.RECOVERY_HISTORY_SIZE,
                max(1, int(settings.RECOVERY_HISTORY_TTL * 1000)),
                POSITION_TTL_SECONDS * 1000,
                stream,
                group,
                text,
                str(message.get("event_type", "other")),
                repr(float(str(message.get("sent_at") or time.time()))),
                str(message.get("exclude_connection") or ""),
                self._layout.channel(group),
                str(message.get("observe") or ""),
            ],
        )
        return Appended(int(offset), _text(epoch), _text(frame))

    async def _run_kept(self, stream: str, after: int, upto: int | None) -> tuple[str, int, list[Any]]:
        group = _group_of(stream)
        epoch, offset, entries = await self._kept[self._shard(group)](
            keys=[f"{PREFIX}{stream}", f"{PREFIX}{stream}:log"],
            args=[new_epoch(), POSITION_TTL_SECONDS * 1000, after, -1 if upto is None else upto],
        )
        return _text(epoch), int(offset), entries

    async def positions(self, streams: Sequence[str]) -> dict[str, Position]:
        found = await self._batched_positions.many(streams)
        return {name: position for name, position in found.items() if position is not None}

    async def _read_positions(self, streams: list[str]) -> dict[str, Position]:
        """One script call per shard involved (usually one in all)."""
        by_shard: dict[int, list[str]] = {}
        for name in streams:
            by_shard.setdefault(self._shard(_group_of(name)), []).append(name)
        found = {}
        for shard, names in by_shard.items():
            keys = [key for name in names for key in (f"{PREFIX}{name}", f"{PREFIX}{name}:log")]
            flat = await self._positions[shard](keys=keys, args=[new_epoch(), POSITION_TTL_SECONDS * 1000])
            for name, epoch, offset in zip(names, flat[::2], flat[1::2], strict=True):
                found[name] = Position(int(offset), _text(epoch))
        return found

    async def kept(self, stream: str, *, after: int, upto: int | None = None) -> Kept:
        found = await self._batched_kept((stream, after, upto))
        assert found is not None  # every request of a batch gets its answer
        return found

    async def _read_kept_many(self, requests: list[KeptRequest]) -> dict[KeptRequest, Kept]:
        """Resumes that arrive together (a reconnect storm: thousands of clients of the same
        streams) share one read per stream, of the widest range any of them asked for."""
        by_stream: dict[str, list[KeptRequest]] = {}
        for request in requests:
            by_stream.setdefault(request[0], []).append(request)
        answers = {}
        for stream, asked in by_stream.items():
            lowest = min(after for _, after, _ in asked)
            uptos = [upto for _, _, upto in asked]
            highest = None if None in uptos else max(upto for upto in uptos if upto is not None)
            epoch, offset, entries = await self._run_kept(stream, lowest, highest)
            kept = [_kept_entry(entry_id, fields) for entry_id, fields in entries]
            for request in asked:
                answers[request] = _kept_between(Position(offset, epoch), kept, request[1], request[2])
        return answers

    async def close(self) -> None:
        for shard in self._shards:
            await shard.aclose()


KeptRequest = tuple[str, int, int | None]  # stream, after, upto


def _kept_entry(entry_id: Any, fields: list[Any]) -> tuple[int, str, float]:
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    return int(_text(entry_id).partition("-")[0]), _text(values[b"f"]), float(values[b"t"])


def _kept_between(position: Position, kept: list[tuple[int, str, float]], after: int, upto: int | None) -> Kept:
    """The frames with offsets in (after, upto], or None when any of them is no longer kept."""
    last = position.offset if upto is None else min(upto, position.offset)
    if after >= last:
        return Kept(position, [])
    oldest = time.time() - settings.RECOVERY_HISTORY_TTL
    frames = [(offset, frame) for offset, frame, at in kept if after < offset <= last and at >= oldest]
    complete = len(frames) == last - after and frames[0][0] == after + 1
    return Kept(position, frames if complete else None)


def _group_of(stream: str) -> str:
    parsed = parse_stream(stream)
    assert parsed is not None, f"not a stream name: {stream!r}"
    return parsed.group
