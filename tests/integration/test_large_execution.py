"""A 150-step execution on the real engine: its checkpoint is split into a header and
parts (an event writes what it changed, not all 150 steps), it survives a SIGKILL of
its worker mid-way, and `status` (read_checkpoints) shows every step."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from stepstream.client.watch import INDEX_KEYS, changelog_topic, reader, rewind
from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows.checkpoint import DELTA_LIMIT, split_part_key
from tests.integration.workers import (
    WorkerProcess,
    definition,
    engine_env,
    prepare,
    read_topic,
    wait_for_checkpoints,
    wait_until_ready,
)

MIDDLE = 148
FAN_OUT = definition(
    {
        "id": "wide-fan-out",
        "version": 1,
        "steps": [
            {"id": "root", "type": "noop"},
            *[
                {"id": f"m{n}", "type": "sleep", "dependsOn": ["root"], "config": {"seconds": 0.1}}
                for n in range(MIDDLE)
            ],
            {"id": "join", "type": "noop", "dependsOn": [f"m{n}" for n in range(MIDDLE)]},
        ],
    }
)


async def changelog_records(settings: Settings) -> list[list[tuple[str, Any]]]:
    """Each partition's (key, value) records in the order they were written."""
    from aiokafka import TopicPartition

    consumer = reader(settings)
    await consumer.start()
    try:
        topic = changelog_topic(settings)
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        written: dict[int, list[tuple[str, Any]]] = {p.partition: [] for p in partitions}
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                written[tp.partition] += [
                    (r.key.decode(), r.value and json.loads(r.value))
                    for r in records
                    if r.key and not r.key.startswith(INDEX_KEYS)  # indexes are not JSON
                ]
        return list(written.values())
    finally:
        await consumer.stop()


def test_a_large_execution_is_stored_in_parts_and_survives_a_kill(
    settings: Settings,
    kafka_bootstrap: str,
    schema_database_url: str,
    run_token: str,
    tmp_path: Path,
) -> None:
    env = engine_env(settings, f"test-{run_token}-large", DATABASE_URL=schema_database_url)
    engine = Settings.from_env(env)
    names = TopicNames.for_prefix(engine.topic_prefix)
    asyncio.run(prepare(engine, FAN_OUT))

    async def start(count: int) -> list[str]:
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            ids = [
                await client.start_workflow("wide-fan-out", {}, "t", f"u{n}") for n in range(count)
            ]
            await client.flush()
            return ids

    worker = WorkerProcess("large-w1", env, tmp_path)
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))
        ids = asyncio.run(start(3))
        # Kill once a third of their steps have completed.
        asyncio.run(
            read_topic(
                engine,
                names.step_completed,
                until=lambda events: sum(e.record["execution_id"] in ids for e in events) >= 150,
                timeout=60,
            )
        )
        worker.kill()
    finally:
        worker.stop()

    worker = WorkerProcess("large-w1", env, tmp_path)  # restarted on its data directory
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))
        checkpoints = asyncio.run(wait_for_checkpoints(engine, ids, timeout=120))
        for checkpoint in checkpoints.values():
            state = checkpoint["state"]
            assert state["st"] == "completed"
            assert len(state["steps"]) == MIDDLE + 2
            assert {values[0] for values in state["steps"].values()} == {"completed"}
        partitions = asyncio.run(changelog_records(engine))
        parts = {split_part_key(key) for records in partitions for key, _ in records} - {None}
        assert {(i, n) for i in ids for n in range(3)} <= parts  # 150 steps: 3 parts of 64
        for records in partitions:
            assert_parts_only_follow_a_full_delta(records)
    finally:
        worker.stop()


def assert_parts_only_follow_a_full_delta(records: list[tuple[str, Any]]) -> None:
    """A header carries the steps changed since the parts were last written. Parts are
    written only once that delta is over DELTA_LIMIT, right after the header that carries
    it (then a header with an empty delta). So an event of a 150-step execution writes
    what it changed, not the 150 steps, however its events are batched."""
    may_write_parts: dict[str, bool] = {}  # execution id -> its last record allows a part
    for key, value in records:
        if (part := split_part_key(key)) is None:
            if isinstance(value, dict) and "state" in value:
                may_write_parts[key] = len(value["state"]["steps"]) > DELTA_LIMIT
            continue
        execution_id, _ = part
        assert may_write_parts.get(execution_id), f"{key} written without a full delta before it"
