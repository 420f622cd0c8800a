"""A worker split by role: one process coordinates (`--roles coordinator`), another runs
the steps and persists (`--roles executor,persister`). Executions complete, the steps
process can die and be replaced without losing one, and only the coordinator joins the
coordinator's consumer group."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import defaultdict
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    cli,
    engine_env,
    prepare,
    read_topic,
    sleep_diamond,
    wait_until_ready,
)

DIAMOND = sleep_diamond("roles-diamond", 0.1)


async def group_members(bootstrap: str, group: str) -> list[str]:
    """The client ids of the group's members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    [(_error, _group, _state, _protocol_type, _protocol, members, *_)] = response.groups
    return [client_id for _member_id, client_id, *_ in members]


async def persisted_statuses(database_url: str, ids: list[str]) -> dict[str, str]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT execution_id, status FROM workflow_executions"
            " WHERE execution_id = ANY($1::text[])",
            ids,
        )
    finally:
        await connection.close()
    return {row["execution_id"]: row["status"] for row in rows}


async def test_a_split_worker_completes_executions_when_its_steps_process_is_replaced(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-roles")
    engine = Settings.from_env(env)
    names = TopicNames.for_prefix(engine.topic_prefix)
    await prepare(engine, DIAMOND)
    coordinator = WorkerProcess("roles-coordinator", env, tmp_path, ("--roles", "coordinator"))
    steps = WorkerProcess("roles-steps-1", env, tmp_path, ("--roles", "executor,persister"))
    processes = [coordinator, steps]
    try:
        await wait_until_ready(engine, processes, 120)
        # The steps process is in no group of the coordinator's: it would take partitions.
        members = await group_members(kafka_bootstrap, f"{engine.topic_prefix}-engine")
        assert len(members) == 1, members
        async with WorkflowClient(engine) as client:
            ids = [
                await client.start_workflow("roles-diamond", {}, "t", f"r{run_token}-{n}")
                for n in range(40)
            ]
            await client.flush()
            await read_topic(
                engine,
                names.step_completed,
                timeout=60,
                until=lambda events: any(e.record["execution_id"] in ids for e in events),
            )
            steps.kill()  # mid-run: its steps were running, its reports partly sent
            replacement = WorkerProcess(
                "roles-steps-2", env, tmp_path, ("--roles", "executor,persister")
            )
            processes.append(replacement)
            outcomes = await asyncio.gather(*(client.wait_for(i, timeout=180) for i in ids))
        assert {o.status for o in outcomes} == {"completed"}
        finished = await read_topic(engine, names.workflow_completed)
        outcome_ids: dict[str, set[str]] = defaultdict(set)
        for event in finished:
            if event.record["execution_id"] in ids:
                outcome_ids[event.record["execution_id"]].add(event.record["event_id"])
        assert all(len(outcome_ids[i]) == 1 for i in ids)  # one outcome each, however re-sent
        # The replacement's persister wrote what the killed one had not.
        result = cli(
            env,
            "status",
            ids[-1],
            until=lambda r: "completed" in r.stdout,
            timeout=60,
        )
        assert "completed" in result.stdout, result.stdout + result.stderr
        statuses = await persisted_statuses(engine.database_url, ids)
        assert statuses == dict.fromkeys(ids, "completed")
    finally:
        for process in processes:
            process.stop()


def test_the_workers_list_says_what_each_role_serves(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-roles-listed")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine))
    coordinator = WorkerProcess("listed-coordinator", env, tmp_path, ("--roles", "coordinator"))
    steps = WorkerProcess("listed-steps", env, tmp_path, ("--roles", "executor"))
    try:
        asyncio.run(wait_until_ready(engine, [coordinator, steps], 120))
        result = cli(
            env,
            "workers",
            until=lambda r: "listed-coordinator" in r.stdout and "listed-steps" in r.stdout,
            timeout=60,
        )
        lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
        assert "serves nothing; types -" in lines["listed-coordinator"], result.stdout
        assert "serves steps without a queue" in lines["listed-steps"], result.stdout
        assert "noop" in lines["listed-steps"]
        # Both answer their readiness probe; the steps process has no faust group at all.
        listed = json.loads(cli(env, "workers", "-o", "json").stdout)
        for worker in listed:
            healthz = worker["metrics_url"].replace("/metrics", "/healthz")
            with urllib.request.urlopen(healthz, timeout=5) as response:
                assert (response.status, response.read()) == (200, b"ready\n"), worker
        members = asyncio.run(group_members(kafka_bootstrap, f"{engine.topic_prefix}-steps"))
        assert members == []
    finally:
        coordinator.stop()
        steps.stop()


def test_an_unknown_role_is_refused_with_the_roles_there_are(settings: Settings) -> None:
    result = cli(dict(engine_env(settings, "unused")), "worker", "--roles", "coordinator,exec")
    assert result.returncode == 2
    assert "exec: the roles are coordinator, executor, persister" in result.stderr
