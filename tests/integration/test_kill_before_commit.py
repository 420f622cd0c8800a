"""A worker killed after its batches were processed and their outputs sent, but before
the coordinator committed their offsets, loses nothing (delivery rules 1 and 2).

The commit interval is set to an hour, so the coordinator commits nothing while the
executions run: every event it processed is still uncommitted when the worker is
SIGKILLed, with some executions finished and the others mid-way. The worker restarts on
the same data directory and is handed every event again: the unfinished executions must
complete, and the finished ones' outcomes be re-emitted (not dropped), each execution
with one outcome whose copies carry the same event id.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    engine_env,
    prepare,
    read_topic,
    sleep_diamond,
    wait_for_checkpoints,
    wait_until_ready,
)

EXECUTIONS = 40
# A diamond of 0.2 s steps: a kill finds some executions done and others mid-way.
SLOW_DIAMOND = sleep_diamond("slow-diamond", 0.2)


async def committed_offsets(settings: Settings, group: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)
        ]
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {f"{tp.topic}/{tp.partition}": m.offset for tp, m in offsets.items() if m.offset > 0}
    finally:
        await admin.close()


async def start_and_kill_midway(settings: Settings, worker: WorkerProcess) -> tuple[list[str], int]:
    """Start the executions; kill the worker once a quarter of them have completed."""
    async with WorkflowClient(settings) as client:
        ids = [
            await client.start_workflow("slow-diamond", {}, "t", f"u{n}") for n in range(EXECUTIONS)
        ]
        waits = [asyncio.ensure_future(client.wait_for(i, timeout=60)) for i in ids]
        done: set[asyncio.Future[Any]] = set()
        while len(done) < EXECUTIONS // 4:
            finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            done |= finished
            waits = [w for w in waits if w not in finished]
        worker.kill()  # between the batches (processed, outputs sent) and their commit
        for wait in waits:
            wait.cancel()
    return ids, len(done)


async def run_executions(settings: Settings, count: int) -> list[str]:
    async with WorkflowClient(settings) as client:
        ids = [await client.start_workflow("slow-diamond", {}, "t", f"v{n}") for n in range(count)]
        outcomes = await asyncio.gather(*(client.wait_for(i, timeout=60) for i in ids))
    assert [o.status for o in outcomes] == ["completed"] * count
    return ids


def test_a_worker_killed_before_its_commit_loses_nothing(
    settings: Settings,
    kafka_bootstrap: str,
    schema_database_url: str,
    run_token: str,
    tmp_path: Path,
) -> None:
    env = engine_env(
        settings,
        f"test-{run_token}-uncommitted",
        DATABASE_URL=schema_database_url,
        STEPSTREAM_COMMIT_INTERVAL_MS="3600000",
    )
    engine = Settings.from_env(env)
    names = TopicNames.for_prefix(engine.topic_prefix)
    coordinator_inputs = [names.executions, names.step_completed]
    asyncio.run(prepare(engine, SLOW_DIAMOND))

    worker = WorkerProcess("uncommitted-w1", env, tmp_path)
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))
        before, finished_before_kill = asyncio.run(start_and_kill_midway(engine, worker))
        group = f"{engine.topic_prefix}-engine"
        assert asyncio.run(committed_offsets(engine, group, coordinator_inputs)) == {}
        assert finished_before_kill < EXECUTIONS  # some were mid-way
    finally:
        worker.stop()

    worker = WorkerProcess("uncommitted-w1", env, tmp_path)  # the same data directory
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))
        after = asyncio.run(run_executions(engine, 5))
        checkpoints = asyncio.run(wait_for_checkpoints(engine, before + after, timeout=120))
        assert {c["state"]["st"] for c in checkpoints.values()} == {"completed"}

        outcomes = asyncio.run(
            read_topic(
                engine,
                names.workflow_completed,
                until=lambda events: set(before) <= {e.record["execution_id"] for e in events},
                timeout=120,
            )
        )
        ids_by_execution: dict[str, set[str]] = defaultdict(set)
        copies = 0
        for event in outcomes:
            if event.record["execution_id"] in before:
                assert event.name == "WorkflowCompleted", event.record
                ids_by_execution[event.record["execution_id"]].add(event.record["event_id"])
                copies += 1
        assert set(ids_by_execution) == set(before)
        assert all(len(ids) == 1 for ids in ids_by_execution.values()), ids_by_execution
        # The restarted worker was handed the uncommitted events again and re-emitted
        # what they led to (the copies are how a downstream consumer sees redelivery).
        assert copies >= len(before) + finished_before_kill
    finally:
        worker.stop()
