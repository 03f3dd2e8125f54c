"""Token-bucket rate limits per API key id (anonymous clients share the id ``anon``).

``rate_limits.requests_per_minute`` refills the bucket, ``rate_limits.burst`` is its size
(default: one minute's worth); ``rate_limits.keys.<key id>`` overrides both for one key. With
Redis the bucket lives there and is updated atomically by a Lua script, so every replica behind
a load balancer enforces one limit; the in-process bucket stands in while Redis is down.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

from ..config import RateLimitsConfig
from .redis_link import RedisLink, RedisUnavailable

__all__ = [
    "Bucket",
    "MemoryLimiter",
    "RateLimiter",
    "RedisLimiter",
    "bucket_for",
]

ANON = "anon"

# KEYS[1] the bucket; ARGV: rate (tokens/s), capacity. Redis' own clock, so replicas agree.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    rate: float  # tokens per second
    capacity: float


def bucket_for(config: RateLimitsConfig, key_id: str) -> Bucket | None:
    """The bucket for ``key_id``, or None when it is not limited."""
    override = config.keys.get(key_id)
    rpm = config.requests_per_minute
    burst = config.burst
    if override is not None:
        rpm = override.requests_per_minute if override.requests_per_minute is not None else rpm
        burst = override.burst if override.burst is not None else burst
    if rpm is None:
        return None
    return Bucket(rpm / 60.0, float(burst if burst is not None else max(1.0, rpm)))


class RateLimiter(Protocol):
    async def acquire(self, key_id: str | None) -> float | None:
        """Take one token: None when allowed, else the seconds until one is available."""
        ...


class MemoryLimiter:
    def __init__(self, config: RateLimitsConfig) -> None:
        self.config = config
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)

    def take(self, key: str, bucket: Bucket) -> float | None:
        now = time.monotonic()
        tokens, ts = self._buckets.get(key, (bucket.capacity, now))
        tokens = min(bucket.capacity, tokens + max(0.0, now - ts) * bucket.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / bucket.rate

    async def acquire(self, key_id: str | None) -> float | None:
        key = key_id or ANON
        bucket = bucket_for(self.config, key)
        return None if bucket is None else self.take(key, bucket)


class RedisLimiter:
    def __init__(
        self, link: RedisLink, config: RateLimitsConfig, fallback: MemoryLimiter | None = None
    ) -> None:
        self.link = link
        self.config = config
        self.fallback = fallback or MemoryLimiter(config)
        self._script = link.client.register_script(_TOKEN_BUCKET)

    async def acquire(self, key_id: str | None) -> float | None:
        key = key_id or ANON
        bucket = bucket_for(self.config, key)
        if bucket is None:
            return None
        try:
            result = await self.link.run(
                lambda r: self._script(
                    keys=[f"hydra:ratelimit:{key}"],
                    args=[repr(bucket.rate), repr(bucket.capacity)],
                    client=r,
                )
            )
        except RedisUnavailable:
            return self.fallback.take(key, bucket)
        allowed, wait = result
        return None if int(allowed) == 1 else max(float(wait), 0.001)


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
