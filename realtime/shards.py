"""Which of the channel layer's Redis servers carries a group: channels-redis' own hash, in one place.

channels-redis' pub/sub layer spreads groups over its `hosts` by a hash of each group's pub/sub
channel (`<prefix>__group__<group>`). Whatever else must happen on a group's server — its stream
log, a health probe of each server — asks here, so it lands where the layer publishes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from channels_redis.utils import _consistent_hash, decode_hosts
from django.conf import settings

PUBSUB_LAYER = "channels_redis.pubsub.RedisPubSubChannelLayer"
# channels-redis maps a name to one of 4096 slots, then the slots to servers: past 4096 servers
# some would carry nothing.
MAX_SHARDS = 4096


@dataclass(frozen=True, slots=True)
class LayerShards:
    """The channel layer's servers as channels-redis numbers them (the order of its `hosts`)."""

    count: int = 1
    prefix: str = "asgi"

    @classmethod
    def from_settings(cls) -> LayerShards:
        """The layer of `CHANNEL_LAYERS["default"]`: one shard for anything but the pub/sub layer."""
        layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
        if layer.get("BACKEND") != PUBSUB_LAYER:
            return cls()
        config = layer.get("CONFIG", {})
        return cls(count=len(decode_hosts(config.get("hosts"))), prefix=config.get("prefix", "asgi"))

    def channel(self, group: str) -> str:
        """The pub/sub channel the layer publishes `group` on (`RedisPubSubLoopLayer`)."""
        return f"{self.prefix}__group__{group}"

    def of(self, group: str) -> int:
        """The index of the server that carries `group`."""
        return _consistent_hash(self.channel(group), self.count)

    def group_on(self, base: str, shard: int) -> str:
        """A group name made from `base` that the layer puts on `shard` (a probe per server)."""
        if self.count > MAX_SHARDS or not 0 <= shard < self.count:
            raise ValueError(f"no shard {shard} among {self.count}")
        # Each server holds 4096/count consecutive slots of a CRC: about `count` tries find one.
        return next(name for n in itertools.count() if self.of(name := f"{base}.{n}") == shard)
