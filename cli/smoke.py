"""A smoke job: write to and read back from each service, reporting what it did."""

from __future__ import annotations

import time
import uuid

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stepstream.streams.settings import Settings


async def kafka_round_trip(bootstrap_servers: str, topic: str, payload: bytes) -> bytes:
    """Create a topic, produce one record and consume it back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, payload, key=b"smoke")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        return bytes(record.value or b"")
    finally:
        await consumer.stop()


async def postgres_round_trip(database_url: str, payload: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute("CREATE TEMP TABLE smoke (id serial PRIMARY KEY, body text)")
            row_id = await connection.fetchval(
                "INSERT INTO smoke (body) VALUES ($1) RETURNING id", payload
            )
            return str(await connection.fetchval("SELECT body FROM smoke WHERE id = $1", row_id))
    finally:
        await connection.close()


async def redis_round_trip(redis_url: str, key: str, payload: str) -> str:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await client.set(key, payload, px=60_000)
        return str(await client.get(key))
    finally:
        await client.delete(key)
        await client.aclose()


async def run_smoke(settings: Settings) -> list[str]:
    token = uuid.uuid4().hex[:12]
    lines = []
    checks = [
        (
            "kafka",
            settings.kafka_bootstrap_servers,
            kafka_round_trip(
                settings.kafka_bootstrap_servers,
                f"{settings.topic_prefix}.smoke-{token}",
                token.encode(),
            ),
        ),
        ("postgres", settings.database_url, postgres_round_trip(settings.database_url, token)),
        (
            "redis",
            settings.redis_url,
            redis_round_trip(settings.redis_url, f"{settings.topic_prefix}:smoke:{token}", token),
        ),
    ]
    failures = 0
    for name, where, round_trip in checks:
        started = time.perf_counter()
        echoed = await round_trip
        elapsed_ms = (time.perf_counter() - started) * 1000
        echoed_text = echoed.decode() if isinstance(echoed, bytes) else echoed
        ok = echoed_text == token
        failures += not ok
        lines.append(
            f"{name:<9} {'ok' if ok else 'MISMATCH':<8} wrote {token!r}, read {echoed_text!r} "
            f"back in {elapsed_ms:.1f} ms ({where})"
        )
    if failures:
        raise RuntimeError("\n".join(lines))
    return lines
