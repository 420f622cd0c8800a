"""The two-tier cache on real Redis: hits, misses, expiry, invalidation, single flight,
statistics, and what happens when Redis is away or the cache is disabled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from stepstream.infra.ai import PriorityDecision
from stepstream.infra.cache import TieredCache, count_entries
from stepstream.infra.metrics import METRICS
from stepstream.infra.priority import PriorityService


@pytest.fixture
async def shared(redis_url: str, run_token: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url, socket_timeout=0.5)
    yield client
    keys = [key async for key in client.scan_iter(match=f"test:{run_token}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


class Loader:
    def __init__(self, value: str = "v", delay: float = 0.0) -> None:
        self.calls = 0
        self.value = value
        self.delay = delay

    async def __call__(self) -> str:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow backend, so callers overlap
        return f"{self.value}{self.calls}"


def requests(result: str) -> tuple[str, dict[str, str]]:
    return "stepstream_cache_requests_total", {"cache": "ai", "result": result}


def cache(
    redis: aioredis.Redis | None, prefix: str, ttl_ms: int = 60_000, **options: object
) -> TieredCache:
    return TieredCache("ai", redis, ttl_ms, prefix=prefix, **options)  # type: ignore[arg-type]


async def test_a_miss_loads_and_later_lookups_hit_even_on_another_worker(
    shared: aioredis.Redis, run_token: str
) -> None:
    prefix = f"test:{run_token}:a"
    load = Loader()
    counted = {r: METRICS.registry.get_sample_value(*requests(r)) or 0 for r in ("hit", "miss")}
    first, second = cache(shared, prefix), cache(shared, prefix)  # two workers
    assert await first.get_or_load("k", load) == "v1"
    assert await first.get_or_load("k", load) == "v1"  # local tier
    assert await second.get_or_load("k", load) == "v1"  # Redis tier
    assert load.calls == 1
    assert (first.stats.misses, first.stats.hits, second.stats.hits) == (1, 1, 1)
    assert await count_entries(shared, prefix, "ai") == 1
    # Counted in process (no Redis round trip): two hits, one miss.
    for result, more in (("hit", 2), ("miss", 1)):
        assert METRICS.registry.get_sample_value(*requests(result)) == counted[result] + more


async def test_entries_expire_in_both_tiers(
    shared: aioredis.Redis, redis_url: str, run_token: str
) -> None:
    prefix = f"test:{run_token}:b"
    key = f"{prefix}:cache:ai:k"
    load = Loader()
    short = cache(shared, prefix, ttl_ms=200)
    # Wait for Redis to report the key expired (a keyspace event), not for a guessed time.
    await shared.config_set("notify-keyspace-events", "Ex")
    listener = aioredis.from_url(redis_url)  # no socket timeout: it waits on purpose
    events = listener.pubsub()
    await events.psubscribe("__keyevent@*__:expired")
    await short.get_or_load("k", load)
    async with asyncio.timeout(10):
        async for message in events.listen():
            if message["type"] == "pmessage" and message["data"] == key.encode():
                break
    await events.aclose()
    await listener.aclose()
    assert await short.get_or_load("k", load) == "v2"
    assert load.calls == 2


async def test_invalidation_drops_both_tiers(shared: aioredis.Redis, run_token: str) -> None:
    prefix = f"test:{run_token}:c"
    load = Loader()
    one = cache(shared, prefix)
    await one.get_or_load("k", load)
    await one.invalidate("k")
    assert await cache(shared, prefix).get_or_load("k", load) == "v2"


async def test_concurrent_identical_requests_make_one_call(
    shared: aioredis.Redis, run_token: str
) -> None:
    load = Loader(delay=0.2)
    one = cache(shared, f"test:{run_token}:d")
    results = await asyncio.gather(*(one.get_or_load("k", load) for _ in range(20)))
    assert results == ["v1"] * 20 and load.calls == 1


async def test_an_unreachable_redis_is_bypassed_and_counted() -> None:
    dead = aioredis.from_url(
        "redis://127.0.0.1:1/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    load = Loader()
    one = cache(dead, "test:dead")
    assert await one.get_or_load("k", load) == "v1"
    assert await one.get_or_load("k", load) == "v1"  # the local tier still serves
    assert one.stats.bypassed >= 2
    await dead.aclose()


async def test_a_disabled_cache_always_loads(shared: aioredis.Redis, run_token: str) -> None:
    load = Loader()
    off = cache(shared, f"test:{run_token}:e", enabled=False)
    assert [await off.get_or_load("k", load) for _ in range(3)] == ["v1", "v2", "v3"]
    assert not await shared.exists(f"test:{run_token}:e:cache:ai:k")


async def test_priority_answers_are_cached_per_tenant(
    shared: aioredis.Redis, run_token: str
) -> None:
    class CountingClassifier:
        calls = 0

        async def classify(
            self, title: str, description: str, category: str | None
        ) -> PriorityDecision:
            self.calls += 1
            return PriorityDecision("HIGH", "leak", "m")

    classifier = CountingClassifier()
    service = PriorityService(classifier, "m", cache(shared, f"test:{run_token}:f"))
    await service.decide("t1", "Leak in sink", "", "plumbing")
    await service.decide("t1", "leak  IN sink", "", "plumbing")  # normalised: a hit
    await service.decide("t2", "Leak in sink", "", "plumbing")  # another tenant: a miss
    assert classifier.calls == 2
