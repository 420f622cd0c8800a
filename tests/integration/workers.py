"""Helpers for tests on the real broker: definitions, reading topics and checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from stepstream.client.watch import reader, rewind, wait_for_commits
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.data import seed
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.schemas.codec import CODEC, DecodedEvent, EventCodecError
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import WorkflowDefinition, build_definition
from tests.waiting import repeat_until

__all__ = ["WorkerProcess", "prepare", "wait_until_ready"]


@contextlib.contextmanager
def running_worker(
    settings: Settings, env: dict[str, str], name: str, workdir: Path, *extra_args: str
) -> Iterator[WorkerProcess]:
    """A worker process, once it runs executions; stopped afterwards."""
    worker = WorkerProcess(name, env, workdir, extra_args)
    try:
        asyncio.run(wait_until_ready(settings, [worker], 120))
        yield worker
    finally:
        worker.stop()


def engine_env(settings: Settings, prefix: str, **overrides: str) -> dict[str, str]:
    """The environment of an isolated engine: its own topic prefix (and consumer group).
    Rate limiting is off unless a test turns it on: it is tested on its own."""
    return {
        **os.environ,
        **settings.as_environment(),
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "4",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
        **overrides,
    }


def cli(
    env: dict[str, str],
    *args: str,
    until: Callable[[subprocess.CompletedProcess[str]], bool] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `stepstream ARGS` as a user would. With `until`, run it again until its answer
    satisfies it or `timeout` passes (PostgreSQL's view trails the topics by the
    persister's batch); the last answer is returned either way."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stepstream", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    if until is None:
        return run()
    return repeat_until(run, until, timeout)


def definition(raw: dict[str, Any]) -> WorkflowDefinition:
    return build_definition(raw)


async def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[DecodedEvent]], bool] | None = None,
    timeout: float = 30.0,
) -> list[DecodedEvent]:
    """Every decodable event on the topic from the beginning up to its current end (or, with
    `until`, until the condition holds on what was read, within `timeout`)."""
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        events: list[DecodedEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        events.append(CODEC.decode(record.value))
                    except EventCodecError:
                        continue
            if until is not None and until(events):
                return events
            if until is None and all([await consumer.position(p) >= ends[p] for p in partitions]):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition on {topic} not met within {timeout}s")
    finally:
        await consumer.stop()


async def wait_for_checkpoints(
    settings: Settings, execution_ids: list[str], timeout: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Checkpoints of these executions once every one is terminal. The changelog write
    and the outcome event are separate produces, so the outcome may be seen first."""
    from stepstream.client.watch import read_checkpoints

    deadline = time.monotonic() + timeout
    while True:
        checkpoints = await read_checkpoints(settings)
        ours = {i: checkpoints.get(i) for i in execution_ids}
        if all(c and c["state"]["st"] in ("completed", "failed") for c in ours.values()):
            return ours  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError("checkpoints did not reach a terminal state in time")


# A 4-step diamond of no-op steps (a; b and c after a; d after both), id "noop-diamond".
NOOP_DIAMOND = definition(
    {
        "id": "noop-diamond",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop", "dependsOn": ["a"]},
            {"id": "c", "type": "noop", "dependsOn": ["a"]},
            {"id": "d", "type": "noop", "dependsOn": ["b", "c"]},
        ],
    }
)


def sleep_diamond(workflow_id: str, seconds: float) -> WorkflowDefinition:
    """a; b and c after a; d after both: every step sleeps `seconds`."""
    config = {"seconds": seconds}
    return definition(
        {
            "id": workflow_id,
            "version": 1,
            "steps": [
                {"id": "a", "type": "sleep", "config": config},
                {"id": "b", "type": "sleep", "dependsOn": ["a"], "config": config},
                {"id": "c", "type": "sleep", "dependsOn": ["a"], "config": config},
                {"id": "d", "type": "sleep", "dependsOn": ["b", "c"], "config": config},
            ],
        }
    )


# a, then b: 3 s of sleep (time enough to lose b's step-ready while it runs), timeout 5 s.
SLOW_SECOND = definition(
    {
        "id": "slow-second",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {
                "id": "b",
                "type": "sleep",
                "dependsOn": ["a"],
                "timeoutMs": 5000,
                "config": {"seconds": 3},
            },
        ],
    }
)


async def delete_all_records(settings: Settings, topic: str) -> None:
    """Every record of the topic, gone (as retention would take them)."""
    probe = reader(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await probe.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await probe.end_offsets(partitions)
        deletions = {tp: RecordsToDelete(end) for tp, end in ends.items() if end}
        await admin.delete_records(deletions, timeout_ms=10_000)
    finally:
        await admin.close()
        await probe.stop()


async def lose_step_ready(
    settings: Settings, worker: WorkerProcess, workflow_id: str, step_id: str
) -> str:
    """Start an execution and lose the step-ready event of `step_id` for good: once the
    coordinator has committed the event that released the step (nothing will be
    redelivered), the worker is killed and the step-ready topic emptied. The step must
    run longer than this takes, or it completes first."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    async with WorkflowClient(settings, follow_outcomes=False) as client:
        execution_id = await client.start_workflow(workflow_id, {}, "t", "u")
        await client.flush()
    await read_topic(
        settings,
        names.step_ready,
        until=lambda es: any(
            e.record["execution_id"] == execution_id and e.record["step_id"] == step_id for e in es
        ),
    )
    coordinator_group = f"{settings.topic_prefix}-engine"
    await wait_for_commits(settings, coordinator_group, [names.executions, names.step_completed])
    worker.kill()
    await delete_all_records(settings, names.step_ready)
    return execution_id


async def own_property(database_url: str) -> dict[str, int]:
    """A property far from the demo ones, with its own technician: no other test's
    technician workload can run out under this test, nor this one under theirs."""
    connection = await asyncpg.connect(database_url)
    try:
        await seed(connection)
        property_id = await connection.fetchval(
            "INSERT INTO properties (name, latitude, longitude) VALUES ('Outage House', 48.1, 11.5)"
            " RETURNING id"
        )
        asset_id = await connection.fetchval(
            "INSERT INTO assets (property_id, name, category) VALUES ($1, 'Pipes', 'plumbing')"
            " RETURNING id",
            property_id,
        )
        await connection.execute(
            "INSERT INTO technicians (name, skills, latitude, longitude, capacity)"
            " VALUES ('Munich Plumber', '{plumbing}', 48.1, 11.5, 1000)"
        )
    finally:
        await connection.close()
    return {"property_id": property_id, "asset_id": asset_id}


# b fails permanently on its first attempt only: a fault an operator fixes, then retries.
FAILS_ONCE = definition(
    {
        "id": "fails-once",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {
                "id": "b",
                "type": "fail",
                "dependsOn": ["a"],
                "config": {"permanent": True, "attempts": 1},
            },
            {"id": "c", "type": "noop", "dependsOn": ["b"]},
        ],
    }
)


# A diamond whose two branches take 3 s: a cancel lands while they run.
SLOW_DIAMOND = definition(
    {
        "id": "slow-diamond",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "sleep", "dependsOn": ["a"], "config": {"seconds": 3}},
            {"id": "c", "type": "sleep", "dependsOn": ["a"], "config": {"seconds": 3}},
            {"id": "d", "type": "noop", "dependsOn": ["b", "c"]},
        ],
    }
)
