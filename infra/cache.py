"""A two-tier cache: an in-process LRU with TTL in front of Redis.

* Values are strings (callers store JSON). Both tiers expire entries after `ttl_ms`.
* Concurrent loads of one key in a process make one call (single flight).
* Redis failures never fail a caller: the cache is bypassed, a warning is logged once per
  outage, and `bypassed` counts the occurrences.
* Hits, misses and bypasses are counted in process (`stats`, and the Prometheus counter
  `stepstream_cache_requests_total`): a hit in the local tier costs no round trip.
  `stepstream stats` adds up every live worker's counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from stepstream.infra.metrics import METRICS

log = logging.getLogger(__name__)

REDIS_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0  # Redis unreachable: served without the shared tier
    loads: int = 0  # calls to the loader (single flight makes this <= misses)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class TieredCache:
    def __init__(
        self,
        name: str,
        redis: aioredis.Redis | None,
        ttl_ms: int,
        *,
        prefix: str = "stepstream",
        max_local: int = 4096,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stats = CacheStats()
        self._redis = redis
        self._ttl_ms = ttl_ms
        self._prefix = f"{prefix}:cache:{name}:"
        self._max_local = max_local
        self._enabled = enabled
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[str]] = {}
        self._redis_down = False

    @property
    def size(self) -> int:
        return len(self._local)

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[str]]) -> str:
        if not self._enabled:
            self.stats.misses += 1
            self.stats.loads += 1
            self._requests("bypass").inc()
            return await load()
        value = self._local_get(key)
        if value is None:
            value = await self._redis_call(lambda r: r.get(self._prefix + key))
            if value is not None:
                self._local_put(key, value)
        if value is not None:
            self.stats.hits += 1
            self._requests("hit").inc()
            return value
        self.stats.misses += 1
        self._requests("bypass" if self._redis_down else "miss").inc()
        return await self._single_flight(key, load)

    async def invalidate(self, key: str) -> None:
        self._local.pop(key, None)
        await self._redis_call(lambda r: r.delete(self._prefix + key))

    async def _single_flight(self, key: str, load: Callable[[], Awaitable[str]]) -> str:
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.stats.loads += 1
            value = await load()
            self._local_put(key, value)
            await self._redis_call(lambda r: r.set(self._prefix + key, value, px=self._ttl_ms))
            future.set_result(value)
            return value
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here, so a lone loader's failure is not logged twice
            raise
        finally:
            del self._inflight[key]

    def _local_get(self, key: str) -> str | None:
        entry = self._local.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return value

    def _local_put(self, key: str, value: str) -> None:
        self._local[key] = (self._clock() + self._ttl_ms / 1000, value)
        self._local.move_to_end(key)
        while len(self._local) > self._max_local:
            self._local.popitem(last=False)

    def _requests(self, result: str) -> Any:
        return METRICS.cache_requests.labels(self.name, result)

    async def _redis_call(self, call: Callable[[aioredis.Redis], Awaitable[object]]) -> str | None:
        if self._redis is None:
            return None
        try:
            result = await call(self._redis)
        except REDIS_FAILURES as error:
            self.stats.bypassed += 1
            if not self._redis_down:
                log.warning("cache %s: Redis unavailable, bypassing it (%r)", self.name, error)
                self._redis_down = True
            return None
        if self._redis_down:
            log.warning("cache %s: Redis is back", self.name)
            self._redis_down = False
        if isinstance(result, bytes):
            return result.decode()
        return result if isinstance(result, str) else None


async def count_entries(redis: aioredis.Redis, prefix: str, name: str) -> int:
    """How many entries a cache holds in Redis (a scan: for `stats`, not a hot path)."""
    return len([key async for key in redis.scan_iter(match=f"{prefix}:cache:{name}:*")])


async def write_rate_stats(
    redis: aioredis.Redis, prefix: str, totals: dict[str, dict[str, int]]
) -> None:
    """Each tenant's start totals (allowed, rejected, deferred), as its owner counted them."""
    async with redis.pipeline(transaction=False) as pipe:
        for tenant, counts in totals.items():
            if counts:
                pipe.hset(f"{prefix}:rate-stats:{tenant}", mapping=dict(counts.items()))
        await pipe.execute()


async def read_rate_stats(redis: aioredis.Redis, prefix: str) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    async for key in redis.scan_iter(match=f"{prefix}:rate-stats:*"):
        name = key.decode() if isinstance(key, bytes) else key
        raw = await redis.hgetall(key)
        result[name.split(":rate-stats:", 1)[1]] = {
            (k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()
        }
    return result
