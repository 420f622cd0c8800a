"""The persister on real Kafka and PostgreSQL: an event whose row the database refuses
costs only itself (it goes to the dead-letter topic with the reason); the rest of its
batch is written; once the cause is fixed, an operator re-drives the letter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition

from stepstream.agents.persister import Persister
from stepstream.client.watch import reader
from stepstream.schemas.codec import CODEC
from stepstream.streams.engine import WorkerOptions
from stepstream.streams.events import envelope
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, declare_topics
from stepstream.worker import build_worker
from stepstream.workflows import definition_to_dict
from tests.integration.workers import NOOP_DIAMOND, engine_env, read_topic


def workflow_started(execution_id: str, input_json: str) -> bytes:
    return CODEC.encode("WorkflowStarted", started_record(execution_id, input_json))


def started_record(execution_id: str, input_json: str = "{}") -> dict[str, Any]:
    """What the intake emits for a start it admits (a fixed timestamp: comparable bytes)."""
    origin = {
        "execution_id": execution_id,
        "workflow_id": NOOP_DIAMOND.id,
        "workflow_version": NOOP_DIAMOND.version,
        "tenant_id": "t",
        "user_id": "u",
    }
    definition_json = json.dumps(definition_to_dict(NOOP_DIAMOND))
    record = envelope("started", origin, input_json=input_json, definition_json=definition_json)
    return {**record, "timestamp": 1_700_000_000_000}


async def test_a_refused_row_is_dead_lettered_and_the_rest_of_the_batch_is_written(
    settings: Settings, run_token: str, tmp_path: Path
) -> None:
    engine_settings = Settings.from_env(engine_env(settings, f"test-{run_token}-persister"))
    names = TopicNames.for_prefix(engine_settings.topic_prefix)
    bootstrap = engine_settings.kafka_bootstrap_servers
    await declare_topics(kafka_access(engine_settings), engine_settings)
    good, bad = f"{run_token}-kept", f"{run_token}-refused"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for execution_id, input_json in ((good, '{"title": "Door"}'), (bad, "{not json")):
        await producer.send_and_wait(
            names.executions, workflow_started(execution_id, input_json), key=b"one-partition"
        )
    await producer.stop()
    batch = await consume_from(engine_settings, names.executions, 0)
    worker = build_worker(engine_settings, WorkerOptions("persister", tmp_path, "memory://"))
    try:
        await Persister(worker.engine, worker.resources.database).persist(batch)
    finally:
        await worker.close()
        await (await worker.engine.producer()).stop()

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


async def consume_from(settings: Settings, topic: str, start: int) -> list[Any]:
    """The records of a one-partition topic from `start` to its current end: one batch,
    as the persister's consumer would get it."""
    consumer = reader(settings)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, start)
        end = (await consumer.end_offsets([partition]))[partition]
        batch: list[Any] = []
        while start + len(batch) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                batch += records
        return batch
    finally:
        await consumer.stop()


async def test_a_letter_is_re_driven_once_the_cause_is_fixed(
    settings: Settings, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-redrive", STEPSTREAM_TOPIC_PARTITIONS="1")
    engine_settings = Settings.from_env(env)
    names = TopicNames.for_prefix(engine_settings.topic_prefix)
    await declare_topics(kafka_access(engine_settings), engine_settings)
    blocked = f"{run_token}-blocked"
    database = await asyncpg.connect(engine_settings.database_url)
    guard = f"block_{run_token}".replace("-", "_")
    await database.execute(  # the cause: the database refuses this execution's row
        f"""CREATE FUNCTION {guard}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.execution_id = '{blocked}' THEN RAISE EXCEPTION 'blocked for the test'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER {guard} BEFORE INSERT ON workflow_executions
            FOR EACH ROW EXECUTE FUNCTION {guard}();"""
    )
    worker = build_worker(engine_settings, WorkerOptions("redrive", tmp_path, "memory://"))
    persister = Persister(worker.engine, worker.resources.database)
    try:
        producer = await worker.engine.producer()
        await (
            await producer.send(
                names.executions,
                blocked.encode(),
                workflow_started(blocked, "{}"),
                None,
                None,
                None,
            )
        )
        await persister.persist(await consume_from(engine_settings, names.executions, 0))
        await database.execute(
            f"DROP TRIGGER {guard} ON workflow_executions; DROP FUNCTION {guard}();"
        )

        listed = subprocess.run(  # the operator's command line, as documented
            [sys.executable, "-m", "stepstream", "dead-letters", "--redrive"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "blocked for the test" in listed.stdout and "re-driven 1" in listed.stdout
        redriven = await consume_from(engine_settings, names.executions, 1)
        assert [(r.key, r.value) for r in redriven] == [
            (blocked.encode(), CODEC.encode("WorkflowStarted", started_record(blocked)))
        ]
        await persister.persist(redriven)
    finally:
        await worker.close()
        await (await worker.engine.producer()).stop()
        await database.execute(f"DROP TRIGGER IF EXISTS {guard} ON workflow_executions")
        await database.execute(f"DROP FUNCTION IF EXISTS {guard}()")
        row = await database.fetchrow(
            "SELECT status FROM workflow_executions WHERE execution_id = $1", blocked
        )
        await database.close()
    assert row is not None and row["status"] == "running"
