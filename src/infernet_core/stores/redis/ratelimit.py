"""A rate limiter whose buckets live in Redis: the limit holds across every replica.

Each check is one script (GCRA on Redis's own clock, so replicas' clocks need not agree),
sent with the other script calls of the same event-loop turn (checks, puts) in one pipeline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...ratelimit import Decision, RateLimit, RateLimiter

if TYPE_CHECKING:
    from .backend import RedisBackend

__all__ = ("RedisRateLimiter",)

# ARGV: key, interval (µs), tolerance (µs). Returns {1, µs until the bucket is full again}
# when allowed, {0, µs the TAT is ahead of now} when refused.
GCRA = r"""
local key, interval, tolerance = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key) or '0')
local start = math.max(tat, now)
if start - now > tolerance then return {0, start - now} end
local new_tat = start + interval
redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, new_tat - now}
"""


class RedisRateLimiter(RateLimiter):
    """GCRA buckets in Redis under ``{prefix}:rl:{bucket}`` (they expire once full again)."""

    def __init__(self, backend: RedisBackend, limit: RateLimit) -> None:
        super().__init__(limit)
        self._backend = backend
        self._prefix = backend.prefix
        self._interval_us = max(1, round(limit.interval * 1_000_000))
        self._tolerance_us = round(limit.tolerance * 1_000_000)
        self._gcra = backend.redis.register_script(GCRA)

    async def open(self) -> None:
        self._backend._use(self)

    async def check(self, bucket: str) -> Decision:
        args = [f"{self._prefix}:rl:{bucket}".encode("utf-8", "surrogatepass"), self._interval_us, self._tolerance_us]
        with self._backend.errors("check a rate limit"):
            allowed, micros = await self._backend.pipeliner.call(self._gcra, args)
        seconds = int(micros) / 1_000_000
        limit = self.limit
        if allowed:
            remaining = max(0, math.floor((limit.period - seconds) / limit.interval + 1e-9))
            return Decision(True, limit.num_requests, remaining, seconds, 0.0)
        return Decision(False, limit.num_requests, 0, seconds, seconds - limit.tolerance)

    async def aclose(self) -> None:
        await self._backend.pipeliner.drain()
        await self._backend._release(self)
