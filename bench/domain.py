"""Benchmark of the domain layer on the local PostgreSQL and Redis.

    .venv/bin/python bench/domain.py [--technicians 10000] [--assignments 500]

Prints numbers; asserts nothing. Runs in a throw-away PostgreSQL schema and Redis prefix.
  1. definition lookup: a cold catalog (reads the compacted topic) vs a warm one;
  2. AI response cache: hit rate and latency on a workload of repeated requests;
  3. technician assignment (one SQL statement) with N technicians: p50 / p99.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from dataclasses import replace

import asyncpg
import redis.asyncio as aioredis

from stepstream.infra.ai import PriorityDecision
from stepstream.infra.cache import TieredCache
from stepstream.infra.db import migrate
from stepstream.infra.priority import PriorityService
from stepstream.steps.maintenance import ASSIGN_TECHNICIAN, CREATE_REQUEST
from stepstream.streams.definitions import DefinitionCatalog, register_definition
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, declare_topics
from stepstream.workflows import build_definition


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def definition_lookup(settings: Settings) -> None:
    settings = replace(settings, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}", topic_partitions=1)
    names = TopicNames.for_prefix(settings.topic_prefix)
    await declare_topics(kafka_access(settings), settings)
    for n in range(50):
        await register_definition(
            kafka_access(settings),
            names.definitions,
            build_definition({"id": f"wf-{n}", "steps": [{"id": "a", "type": "noop"}]}),
        )
    started = time.perf_counter()
    catalog = DefinitionCatalog(kafka_access(settings), names.definitions)
    await catalog.start()
    assert await catalog.lookup("wf-49") is not None
    cold = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(10_000):
        catalog.get("wf-49")
    warm = (time.perf_counter() - started) / 10_000
    await catalog.stop()
    print(
        f"[1] definition lookup: cold (new catalog reads 50 definitions from the topic) "
        f"{cold * 1000:.0f} ms; warm {warm * 1e6:.2f} us; ratio {cold / warm:,.0f}x"
    )


class SlowProvider:
    """Stands in for a remote model: 50 ms per answer."""

    calls = 0

    async def classify(
        self, title: str, description: str, category: str | None
    ) -> PriorityDecision:
        self.calls += 1
        await asyncio.sleep(0.05)
        return PriorityDecision("MEDIUM", "stand-in", "slow-model")


async def ai_cache(settings: Settings) -> None:
    redis = aioredis.from_url(settings.redis_url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    provider = SlowProvider()
    service = PriorityService(
        provider, "slow-model", TieredCache("ai", redis, 300_000, prefix=prefix)
    )
    rng = random.Random(3)
    titles = [f"Issue {n}: something in unit {n % 17}" for n in range(60)]
    weights = [1 / (rank + 1) for rank in range(len(titles))]  # Zipf-like: a few are common
    workload = [
        (f"tenant-{rng.randrange(4)}", rng.choices(titles, weights)[0]) for _ in range(2_000)
    ]
    latencies = []
    started = time.perf_counter()
    for tenant, title in workload:
        t0 = time.perf_counter()
        await service.decide(tenant, title, "", "plumbing")
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    stats = service.cache.stats if service.cache else None
    assert stats is not None
    print(
        f"[2] AI cache: {len(workload)} requests (60 titles, Zipf-like, 4 tenants): hit rate "
        f"{stats.hit_rate:.1%}, provider calls {provider.calls}; latency p50 "
        f"{pct(latencies, 0.5):.2f} ms, p99 {pct(latencies, 0.99):.1f} ms; total "
        f"{elapsed:.1f} s vs {len(workload) * 0.05:.0f} s uncached"
    )
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def assignment(settings: Settings, technicians: int, assignments: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        connection = await asyncpg.connect(f"{settings.database_url}?search_path={schema}")
        await migrate(connection)
        rng = random.Random(5)
        skills = ["plumbing", "electrical", "hvac", "carpentry", "roofing"]
        await connection.copy_records_to_table(
            "technicians",
            columns=["name", "skills", "latitude", "longitude", "capacity"],
            records=[
                (
                    f"tech-{n}",
                    rng.sample(skills, 2),
                    47 + rng.random() * 8,
                    6 + rng.random() * 9,
                    1_000,
                )
                for n in range(technicians)
            ],
        )
        await connection.execute("ANALYZE technicians")
        property_id = await connection.fetchval(
            "INSERT INTO properties (name, latitude, longitude) VALUES ('p', 52.5, 13.4)"
            " RETURNING id"
        )
        asset_id = await connection.fetchval(
            "INSERT INTO assets (property_id, name, category) VALUES ($1, 'a', 'plumbing')"
            " RETURNING id",
            property_id,
        )
        latencies = []
        for n in range(assignments):
            request = await connection.fetchval(
                CREATE_REQUEST, "t", property_id, asset_id, "leak", "", f"bench/{n}"
            )
            t0 = time.perf_counter()
            await connection.fetchrow(ASSIGN_TECHNICIAN, request)
            latencies.append((time.perf_counter() - t0) * 1000)
        await connection.close()
        print(
            f"[3] technician assignment, {technicians:,} technicians, {assignments} "
            f"assignments: p50 {pct(latencies, 0.5):.2f} ms, p99 {pct(latencies, 0.99):.2f} ms,"
            f" mean {statistics.fmean(latencies):.2f} ms"
        )
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--technicians", type=int, default=10_000)
    parser.add_argument("--assignments", type=int, default=500)
    args = parser.parse_args()
    settings = Settings.from_env()
    await definition_lookup(settings)
    await ai_cache(settings)
    await assignment(settings, args.technicians, args.assignments)


if __name__ == "__main__":
    asyncio.run(main())
