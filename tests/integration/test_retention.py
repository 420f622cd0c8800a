"""Hot state holds work in flight: an ended execution's checkpoint and its start id leave
the engine WORKFLOW_RETENTION_SECONDS after its end (tombstones in the changelogs), while
PostgreSQL keeps the history: status and describe still answer, a replay is refused with
the reason, and an id reused afterwards by another tenant never touches the first
tenant's execution."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from stepstream.client.watch import (
    changelog_topic,
    read_changelog,
    reader,
    rewind,
    wait_for_commits,
)
from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    cli,
    engine_env,
    prepare,
    read_topic,
    running_worker,
    sleep_diamond,
)
from tests.waiting import wait_until

DIAMOND = sleep_diamond("retained-diamond", 0.01)


async def raw_changelog_keys(settings: Settings, table: str) -> set[str]:
    """Every key the table's changelog holds a live value for, index keys included."""
    topic = changelog_topic(settings, table)
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        live: set[str] = set()
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                for message in (await consumer.getmany(partition, timeout_ms=1000)).get(
                    partition, []
                ):
                    key = (message.key or b"").decode()
                    if message.value is None:
                        live.discard(key)
                    else:
                        live.add(key)
        return live
    finally:
        await consumer.stop()


def test_an_ended_execution_leaves_hot_state_and_keeps_its_history(
    settings: Settings, kafka_bootstrap: str, database_url: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-retention", WORKFLOW_RETENTION_SECONDS="3")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, DIAMOND))
    ids = [f"{run_token}-kept-{n}" for n in range(8)]
    with running_worker(engine, env, "retention-w1", tmp_path):

        async def run_them() -> None:
            async with WorkflowClient(engine) as client:
                for execution_id in ids:
                    await client.start_workflow("retained-diamond", {}, "t", "u", execution_id)
                for execution_id in ids:
                    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"

        asyncio.run(run_them())

        async def all_gone() -> bool:
            checkpoints = await raw_changelog_keys(engine, "executions")
            started = await read_changelog(engine, "started")
            mine = [k for k in checkpoints if any(i in k for i in ids)]
            return not mine and not set(ids) & set(started)

        asyncio.run(wait_until(all_gone, 60, "checkpoints, index keys and start ids gone"))

        # PostgreSQL keeps the history: the commands that read it still answer.
        status = cli(env, "status", ids[0])
        assert status.returncode == 0, status.stderr
        assert "completed" in status.stdout
        described = cli(env, "describe", ids[0], "-o", "json")
        assert described.returncode == 0, described.stderr
        assert json.loads(described.stdout)["status"] == "completed"

        # A replay needs the state that has left: refused, and the reason says so.
        replay = cli(env, "replay", ids[0], "rerun-from", "--step", "a", "--reason", "again")
        assert replay.returncode != 0
        assert "WORKFLOW_RETENTION_SECONDS (3 s)" in replay.stderr

        history = asyncio.run(history_row(database_url, ids[1]))

        # Past the dedupe window an id starts anew; another tenant's start with it runs as
        # its own execution and never touches the first tenant's history.
        async def reuse() -> str:
            async with WorkflowClient(engine) as client:
                await client.start_workflow("retained-diamond", {}, "other", "u", ids[1])
                outcomes = await read_topic(
                    engine,
                    TopicNames.for_prefix(engine.topic_prefix).workflow_completed,
                    until=lambda events: (
                        sum(e.record["execution_id"] == ids[1] for e in events) >= 2
                    ),
                    timeout=60,
                )
                return next(
                    e.record["tenant_id"]
                    for e in reversed(outcomes)
                    if e.record["execution_id"] == ids[1]
                )

        assert asyncio.run(reuse()) == "other"
        names = TopicNames.for_prefix(engine.topic_prefix)
        topics = [names.executions, names.step_outcomes, names.workflow_completed]
        asyncio.run(wait_for_commits(engine, f"{engine.topic_prefix}-persister", topics))
    assert asyncio.run(history_row(database_url, ids[1])) == history
    assert history[:2] == ("t", 4)


async def history_row(database_url: str, execution_id: str) -> tuple[Any, ...]:
    """The tenant, step rows and end of an execution's history row."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT tenant_id, (SELECT count(*) FROM workflow_execution_steps s"
            " WHERE s.execution_id = e.execution_id), finished_at, status"
            " FROM workflow_executions e WHERE execution_id = $1",
            execution_id,
        )
        return tuple(row)
    finally:
        await connection.close()
