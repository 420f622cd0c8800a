"""The persister on real Kafka and PostgreSQL: an event whose row the database refuses
costs only itself (it goes to the dead-letter topic with the reason); the rest of its
batch is written."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition

from agents.persister import Persister
from schemas.codec import CODEC
from streams.engine import WorkerOptions, create_engine
from streams.events import envelope
from streams.settings import Settings
from streams.topics import TopicNames, declare_topics
from streams.watch import reader, rewind
from tests.integration.workers import NOOP_DIAMOND, engine_env, read_topic
from workflows import definition_to_dict


def workflow_started(execution_id: str, input_json: str) -> bytes:
    origin = {
        "execution_id": execution_id,
        "workflow_id": NOOP_DIAMOND.id,
        "workflow_version": NOOP_DIAMOND.version,
        "tenant_id": "t",
        "user_id": "u",
    }
    definition_json = json.dumps(definition_to_dict(NOOP_DIAMOND))
    record = envelope("started", origin, input_json=input_json, definition_json=definition_json)
    return CODEC.encode("WorkflowStarted", record)


async def test_a_refused_row_is_dead_lettered_and_the_rest_of_the_batch_is_written(
    settings: Settings, run_token: str, tmp_path: Path
) -> None:
    engine_settings = Settings.from_env(engine_env(settings, f"test-{run_token}-persister"))
    names = TopicNames.for_prefix(engine_settings.topic_prefix)
    bootstrap = engine_settings.kafka_bootstrap_servers
    await declare_topics(bootstrap, names, engine_settings.topic_partitions)
    good, bad = f"{run_token}-kept", f"{run_token}-refused"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for execution_id, input_json in ((good, '{"title": "Door"}'), (bad, "{not json")):
        await producer.send_and_wait(
            names.executions, workflow_started(execution_id, input_json), key=b"one-partition"
        )
    await producer.stop()
    consumer = reader(engine_settings)
    await consumer.start()
    batch = []
    try:  # one batch, as the persister's consumer would get it
        partitions = [
            TopicPartition(names.executions, p) for p in range(engine_settings.topic_partitions)
        ]
        ends = await rewind(consumer, partitions)
        while len(batch) < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                batch += records
    finally:
        await consumer.stop()

    engine = create_engine(engine_settings, WorkerOptions("persister", tmp_path, "memory://"))
    try:
        await Persister(engine).persist(batch)
    finally:
        await engine.close()
        await (await engine.producer()).stop()

    connection = await asyncpg.connect(engine_settings.database_url)
    try:
        rows = await connection.fetch(
            "SELECT execution_id, input FROM workflow_executions WHERE execution_id = ANY($1)",
            [good, bad],
        )
    finally:
        await connection.close()
    assert [(r["execution_id"], json.loads(r["input"])) for r in rows] == [
        (good, {"title": "Door"})
    ]
    letters = await read_topic(engine_settings, names.dead_letter)
    assert [(e.record["execution_id"], e.record["error"].split(":")[:2]) for e in letters] == [
        (bad, ["persister", " InvalidTextRepresentationError"])
    ]
