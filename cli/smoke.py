"""A smoke job: write to and read back from each service, reporting what it did."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stepstream.cli.errors import redact
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings

ROUND_TRIP_TIMEOUT = 15.0


async def kafka_round_trip(settings: Settings, topic: str, payload: bytes) -> bytes:
    """Create a topic, produce one record and consume it back, then delete the topic;
    with the settings' access (TLS, SASL) and replication factor."""
    options = kafka_access(settings).client_options()
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        new = NewTopic(topic, num_partitions=1, replication_factor=settings.replication_factor)
        await admin.create_topics([new])
        producer = AIOKafkaProducer(**options, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=b"smoke")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, **options, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            record = await consumer.getone()
            return bytes(record.value or b"")
        finally:
            await consumer.stop()
    finally:
        with contextlib.suppress(Exception):  # hygiene: the round trip has its answer
            await admin.delete_topics([topic])
        await admin.close()


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


@dataclass(frozen=True)
class Check:
    service: str
    ok: bool
    where: str  # passwords redacted
    detail: str
    elapsed_ms: float

    def line(self) -> str:
        state = "ok" if self.ok else "FAILED"
        return (
            f"{self.service:<9} {state:<8} {self.detail} ({self.elapsed_ms:.1f} ms, {self.where})"
        )


async def run_smoke(settings: Settings) -> list[Check]:
    """Each service in turn; one that fails is reported, and the others still checked."""
    token = uuid.uuid4().hex[:12]
    checks = [
        (
            "kafka",
            settings.kafka_bootstrap_servers,
            kafka_round_trip(
                settings,
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
    results = []
    for name, where, round_trip in checks:
        started = time.perf_counter()
        try:
            echoed = await asyncio.wait_for(round_trip, ROUND_TRIP_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - reported, and the next service checked
            ok, detail = False, redact(f"{type(error).__name__}: {error}").splitlines()[0]
        else:
            text = echoed.decode() if isinstance(echoed, bytes) else echoed
            ok = text == token
            detail = f"wrote {token!r}, read {text!r} back"
        elapsed_ms = (time.perf_counter() - started) * 1000
        results.append(Check(name, ok, redact(where), detail, round(elapsed_ms, 1)))
    return results
