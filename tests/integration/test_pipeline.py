"""The event pipeline on the real broker, with one worker process."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from stepstream.client.watch import ExecutionView, ExecutionWatcher, wait_for_commits
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.data import seed
from stepstream.schemas.codec import CODEC
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import parse_definition
from tests.integration.workers import (
    NOOP_DIAMOND,
    cli,
    definition,
    engine_env,
    prepare,
    read_topic,
    running_worker,
    wait_for_checkpoints,
)

MAINTENANCE = definition(
    {
        "id": "maintenance-sleep",
        "version": 1,
        "steps": [
            {"id": "step-1", "type": "sleep", "config": {"seconds": 0.2}},
            {"id": "step-2", "type": "sleep", "dependsOn": ["step-1"], "config": {"seconds": 0.6}},
            {"id": "step-3", "type": "sleep", "dependsOn": ["step-1"], "config": {"seconds": 0.4}},
            {
                "id": "step-4",
                "type": "sleep",
                "dependsOn": ["step-2", "step-3"],
                "config": {"seconds": 0.1},
            },
        ],
    }
)
FAN = definition(
    {
        "id": "fan-200",
        "version": 1,
        "steps": [
            {"id": "root", "type": "noop"},
            *({"id": f"leaf-{i:03d}", "type": "noop", "dependsOn": ["root"]} for i in range(198)),
            {"id": "sink", "type": "noop", "dependsOn": [f"leaf-{i:03d}" for i in range(198)]},
        ],
    }
)
SLOW_CHAIN = definition(
    {
        "id": "slow-chain",
        "version": 1,
        "steps": [
            {"id": "first", "type": "noop"},
            {"id": "second", "type": "sleep", "dependsOn": ["first"], "config": {"seconds": 1.5}},
            {"id": "third", "type": "noop", "dependsOn": ["second"]},
        ],
    }
)
FAILING = definition(
    {
        "id": "failing",
        "version": 1,
        "steps": [
            {"id": "ok", "type": "noop"},
            {
                "id": "boom",
                "type": "fail",
                "dependsOn": ["ok"],
                "retry": {"maxAttempts": 2, "initialBackoffMs": 50, "jitter": 0},
            },
            {"id": "never", "type": "noop", "dependsOn": ["boom"]},
        ],
    }
)


REFERENCE = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"


async def seed_demo_data(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await seed(connection)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def engine(
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    schema_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    prefix = f"test-{run_token}-pipeline"
    env = engine_env(settings, prefix, DATABASE_URL=schema_database_url)
    engine_settings = Settings.from_env(env)
    reference = parse_definition(REFERENCE.read_text())
    asyncio.run(
        prepare(engine_settings, MAINTENANCE, NOOP_DIAMOND, FAN, SLOW_CHAIN, FAILING, reference)
    )
    asyncio.run(seed_demo_data(schema_database_url))
    with running_worker(engine_settings, env, "pipeline-w1", tmp_path_factory.mktemp("workers")):
        yield engine_settings


@pytest.fixture
async def client(engine: Settings) -> AsyncIterator[WorkflowClient]:
    async with WorkflowClient(engine) as client:
        yield client


async def run_watched(
    engine: Settings, client: WorkflowClient, workflow_id: str, execution_id: str
) -> ExecutionView:
    view = ExecutionView(execution_id)
    async with ExecutionWatcher(engine, execution_id) as watcher:
        await client.start_workflow(workflow_id, {}, "tenant-a", "user-1", execution_id)
        async with asyncio.timeout(60):
            async for event in watcher.events():
                view.apply(event)
    return view


async def test_maintenance_example_runs_independent_steps_in_parallel(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    view = await run_watched(engine, client, "maintenance-sleep", f"{run_token}-maint")
    assert view.outcome == "completed"
    s = view.steps
    assert [s[i].status for i in ("step-1", "step-2", "step-3", "step-4")] == ["completed"] * 4
    assert s["step-2"].started_at >= s["step-1"].finished_at
    assert s["step-3"].started_at >= s["step-1"].finished_at
    # step-2 and step-3 overlap in time ...
    assert max(s["step-2"].started_at, s["step-3"].started_at) < min(
        s["step-2"].finished_at, s["step-3"].finished_at
    )
    # ... and step-4 starts only after both finished.
    assert s["step-4"].started_at >= max(s["step-2"].finished_at, s["step-3"].finished_at)


async def test_a_200_step_fan_out_and_fan_in_completes(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    execution_id = await client.start_workflow(
        "fan-200", {}, "tenant-a", "user-1", f"{run_token}-fan"
    )
    outcome = await client.wait_for(execution_id, timeout=120)
    assert outcome.status == "completed"
    assert len(outcome.outputs) == 200
    checkpoint = (await wait_for_checkpoints(engine, [execution_id]))[execution_id]
    steps = checkpoint["state"]["steps"]
    assert len(steps) == 200
    assert all(values[0] == "completed" and values[2] == 1 for values in steps.values())


async def test_500_concurrent_executions_complete(engine: Settings, client: WorkflowClient) -> None:
    ids = [
        await client.start_workflow("noop-diamond", {"n": n}, f"tenant-{n % 7}", f"user-{n}")
        for n in range(500)
    ]
    outcomes = await asyncio.gather(*(client.wait_for(i, timeout=180) for i in ids))
    assert Counter(outcome.status for outcome in outcomes) == {"completed": 500}


async def test_a_duplicated_start_gives_one_execution(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    execution_id = f"{run_token}-dup-start"
    for _ in range(3):
        await client.start_workflow("noop-diamond", {}, "tenant-a", "user-1", execution_id)
    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"
    names = TopicNames.for_prefix(engine.topic_prefix)
    started = await read_topic(engine, names.executions)
    ready = await read_topic(engine, names.step_ready)
    # Each duplicate announces the same WorkflowStarted again (its first copy may have been
    # lost with a crashed worker); the coordinator starts the execution once.
    assert (
        len({e.record["event_id"] for e in started if e.record["execution_id"] == execution_id})
        == 1
    )
    assert Counter(
        e.record["step_id"] for e in ready if e.record["execution_id"] == execution_id
    ) == {"a": 1, "b": 1, "c": 1, "d": 1}


async def test_an_injected_duplicate_completion_releases_nothing_twice(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    execution_id = f"{run_token}-dup-completion"
    names = TopicNames.for_prefix(engine.topic_prefix)
    async with ExecutionWatcher(engine, execution_id) as watcher:
        await client.start_workflow("slow-chain", {}, "tenant-a", "user-1", execution_id)
        async with asyncio.timeout(60):
            async for event in watcher.events():
                if event.name == "StepReady" and event.record["step_id"] == "second":
                    break
    completed = await read_topic(
        engine,
        names.step_completed,
        until=lambda events: any(e.record["execution_id"] == execution_id for e in events),
    )
    first_done = next(e for e in completed if e.record["execution_id"] == execution_id)
    assert first_done.record["step_id"] == "first"
    # While `second` runs, the completion of `first` arrives again (as after a redelivery).
    duplicate = CODEC.encode("StepCompleted", first_done.record)
    await client.send_raw(names.step_completed, duplicate, key=execution_id.encode())
    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"
    ready = await read_topic(engine, names.step_ready)
    assert Counter(
        e.record["step_id"] for e in ready if e.record["execution_id"] == execution_id
    ) == {"first": 1, "second": 1, "third": 1}


async def test_poison_messages_go_to_the_dead_letter_topic_and_processing_goes_on(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    names = TopicNames.for_prefix(engine.topic_prefix)
    poison_key = f"{run_token}-poison".encode()
    await client.send_raw(names.step_completed, b"\x00not avro at all", key=poison_key)
    await client.send_raw(names.step_ready, b"\xc3\x01 truncated", key=poison_key)
    await client.send_raw(
        names.workflow_start,
        CODEC.encode(
            "DeadLetter",
            {
                "event_id": "x",
                "timestamp": 1,
                "source_topic": "t",
                "partition": 0,
                "offset": 0,
                "error": "e",
                "payload": b"",
            },
        ),
        key=poison_key,
    )
    execution_id = await client.start_workflow(
        "noop-diamond", {}, "tenant-a", "user-1", f"{run_token}-after-poison"
    )
    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"
    letters = await read_topic(
        engine,
        names.dead_letter,
        until=lambda events: sum(e.record["key"] == poison_key for e in events) >= 3,
    )
    ours = {e.record["source_topic"]: e.record for e in letters if e.record["key"] == poison_key}
    assert ours[names.step_completed]["payload"] == b"\x00not avro at all"
    assert "CorruptEvent" in ours[names.step_completed]["error"]
    assert "unexpected DeadLetter" in ours[names.workflow_start]["error"]
    assert ours[names.step_ready]["payload"] == b"\xc3\x01 truncated"
    assert ours[names.workflow_start]["offset"] >= 0


async def test_a_failing_step_is_retried_then_fails_the_workflow(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    view = await run_watched(engine, client, "failing", f"{run_token}-failing")
    assert view.outcome == "failed"
    assert view.steps["boom"].attempt == 2
    assert "InjectedFailure" in view.detail
    assert "never" not in view.steps


async def test_unknown_workflows_and_bad_input_are_rejected_with_the_reason(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    unknown = await client.start_workflow("no-such-workflow", {}, "tenant-a", "user-1")
    outcome = await client.wait_for(unknown, timeout=30)
    assert outcome.status == "rejected"
    assert outcome.record["code"] == "unknown_workflow"
    assert "'no-such-workflow'" in outcome.record["reason"]


def test_status_shows_each_step(engine: Settings, run_token: str) -> None:
    env = engine_env(engine, engine.topic_prefix)
    result = cli(env, "status", f"{run_token}-maint", until=lambda r: "completed" in r.stdout)
    assert result.returncode == 0, result.stderr
    assert "completed" in result.stdout and "step-4" in result.stdout


async def test_executions_and_step_results_reach_postgresql(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    execution_id = f"{run_token}-persisted"
    await client.start_workflow(
        "noop-diamond", {"title": "Door"}, "tenant-a", "user-9", execution_id
    )
    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"
    connection = await asyncpg.connect(engine.database_url)
    try:
        deadline = time.monotonic() + 30
        while True:  # the persister writes in batches, off the coordinator's path
            row = await connection.fetchrow(
                "SELECT * FROM workflow_executions WHERE execution_id = $1", execution_id
            )
            steps = await connection.fetch(
                "SELECT step_id, status, attempt FROM workflow_execution_steps"
                " WHERE execution_id = $1 ORDER BY step_id",
                execution_id,
            )
            if (row and row["status"] == "completed" and len(steps) == 4) or (
                time.monotonic() > deadline
            ):
                break
    finally:
        await connection.close()
    assert row is not None and row["status"] == "completed"
    assert row["user_id"] == "user-9" and row["workflow_id"] == "noop-diamond"
    assert json.loads(row["input"]) == {"title": "Door"}
    assert row["finished_at"] >= row["started_at"]
    assert [tuple(s) for s in steps] == [(s, "completed", 1) for s in "abcd"]


@pytest.mark.parametrize(
    ("title", "priority", "escalated"),
    [("Water leaking under sink", "HIGH", False), ("Gas smell under the sink", "URGENT", True)],
)
async def test_the_reference_maintenance_workflow_does_real_work(
    engine: Settings,
    client: WorkflowClient,
    run_token: str,
    title: str,
    priority: str,
    escalated: bool,
) -> None:
    """The reference workflow on the real services, with its condition false and true:
    the on-call manager is told by SMS only of an URGENT request (step-5); the technician
    is assigned either way."""
    connection = await asyncpg.connect(engine.database_url)
    try:
        lindenhof = await connection.fetchval("SELECT id FROM properties WHERE name = 'Lindenhof'")
        sink = await connection.fetchval("SELECT id FROM assets WHERE name = 'Kitchen sink'")
        execution_id = await client.start_workflow(
            "maintenance-request",
            {"property_id": lindenhof, "asset_id": sink, "title": title},
            "tenant-a",
            "user-1",
            f"{run_token}-reference-{priority.lower()}",
        )
        outcome = await client.wait_for(execution_id, timeout=60)
        assert outcome.status == "completed", outcome.record
        outputs = outcome.outputs
        request_id = outputs["step-1"]["request_id"]
        assert outputs["step-2"]["priority"] == priority
        assert outputs["step-2"]["priority_source"] == "rules"
        assert outputs["step-3"]["request_id"] == request_id
        assert outputs["step-4"]["technician"] == "Ana Plumb"
        row = await connection.fetchrow(
            "SELECT r.priority, r.status, t.name FROM maintenance_requests r"
            " JOIN technicians t ON t.id = r.technician_id WHERE r.id = $1",
            request_id,
        )
        assert tuple(row) == (priority, "assigned", "Ana Plumb")
    finally:
        await connection.close()
    names = TopicNames.for_prefix(engine.topic_prefix)
    notifications = await read_topic(
        engine,
        names.notifications,
        until=lambda events: any(e.record["execution_id"] == execution_id for e in events),
    )
    ours = sorted(
        (e.record["channel"], e.record["recipient"])
        for e in notifications
        if e.record["execution_id"] == execution_id
    )
    if escalated:
        assert outputs["step-5"]["channel"] == "sms"
        assert ours == [("email", "tenant:tenant-a"), ("sms", "on-call-manager")]
        return
    assert "step-5" not in outputs  # skipped: no output at all, not null
    assert ours == [("email", "tenant:tenant-a")]
    reports = await read_topic(
        engine,
        names.step_outcomes,
        until=lambda events: any(
            e.name == "StepSkipped" and e.record["execution_id"] == execution_id for e in events
        ),
    )
    (skipped,) = [
        e for e in reports if e.name == "StepSkipped" and e.record["execution_id"] == execution_id
    ]
    assert skipped.record["step_id"] == "step-5"
    assert skipped.record["reason"] == (
        'condition false: steps["step-2"].priority == "URGENT"'
        ' (saw steps["step-2"].priority = "HIGH")'
    )


async def test_the_executor_and_persister_groups_commit_what_they_finished(
    engine: Settings, client: WorkflowClient
) -> None:
    """They consume outside faust, in their own groups: their committed positions must
    reach the end of their topics once the work is done, or every restart would run
    every step again."""
    ids = [
        await client.start_workflow("noop-diamond", {}, "tenant-c", f"user-{n}") for n in range(20)
    ]
    for execution_id in ids:
        assert (await client.wait_for(execution_id, timeout=60)).status == "completed"
    names = TopicNames.for_prefix(engine.topic_prefix)
    for group, topic in (("executor", names.step_ready), ("persister", names.step_outcomes)):
        await wait_for_commits(engine, f"{engine.topic_prefix}-{group}", [topic])
