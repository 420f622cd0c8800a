"""Each service accepts real data and gives it back."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from stepstream.cli.smoke import kafka_round_trip, postgres_round_trip, run_smoke
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.reaching import cluster_topics
from stepstream.streams.settings import Settings


async def test_kafka_produces_and_consumes_a_record_and_leaves_no_topic(
    settings: Settings, kafka_bootstrap: str, topic_prefix: str
) -> None:
    payload = b"\x00binary\xffpayload"
    topic = f"{topic_prefix}.roundtrip"
    echoed = await kafka_round_trip(settings, topic, payload)
    assert echoed == payload
    assert topic not in await cluster_topics(kafka_access(settings))


async def test_postgres_writes_and_reads_rows_in_the_run_schema(
    pg: asyncpg.Connection, pg_schema: str
) -> None:
    await pg.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
    await pg.executemany("INSERT INTO notes VALUES ($1, $2)", [(1, "first"), (2, "second")])
    rows = await pg.fetch("SELECT id, body FROM notes ORDER BY id")
    assert [tuple(row) for row in rows] == [(1, "first"), (2, "second")]
    table_schema = await pg.fetchval(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'notes'"
    )
    assert table_schema == pg_schema


async def test_postgres_round_trip_helper(database_url: str) -> None:
    assert await postgres_round_trip(database_url, "héllo") == "héllo"


async def test_redis_stores_reads_and_expires_keys(
    redis_client: aioredis.Redis, run_token: str
) -> None:
    key = f"test:{run_token}:greeting"
    await redis_client.set(key, "hello", px=50_000)
    assert await redis_client.get(key) == "hello"
    ttl_ms = await redis_client.pttl(key)
    assert 0 < ttl_ms <= 50_000


async def test_smoke_job_reports_every_service(
    settings: Settings, kafka_bootstrap: str, database_url: str, redis_url: str
) -> None:
    checks = await run_smoke(settings)
    assert [check.service for check in checks] == ["kafka", "postgres", "redis"]
    assert all(check.ok for check in checks), [check.line() for check in checks]
    assert all(check.line().split()[1] == "ok" for check in checks)
