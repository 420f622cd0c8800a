"""Operators recover executions through the replay topic: retry a failed one, rerun one
from a step, resume one whose step-ready event was lost. Real broker, real workers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stepstream.client.watch import read_checkpoint
from stepstream.client.workflow_client import ReplayRefused, WorkflowClient
from stepstream.schemas.codec import CODEC
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import ReplayAction, StepStatus, state_from_dict
from tests.integration.workers import (
    FAILS_ONCE,
    NOOP_DIAMOND,
    SLOW_DIAMOND,
    SLOW_SECOND,
    WorkerProcess,
    cli,
    engine_env,
    lose_step_ready,
    prepare,
    read_topic,
    wait_for_checkpoints,
    wait_until_ready,
)


@pytest.fixture(scope="module")
def engine(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str], Path]]:
    env = engine_env(settings, f"test-{run_token}-replay")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, FAILS_ONCE, NOOP_DIAMOND, SLOW_SECOND, SLOW_DIAMOND))
    workdir = tmp_path_factory.mktemp("replay")
    yield engine, env, workdir


@pytest.fixture(scope="module")
def worker(engine: tuple[Settings, dict[str, str], Path]) -> Iterator[WorkerProcess]:
    settings, env, workdir = engine
    process = WorkerProcess("replay-w1", env, workdir)
    try:
        asyncio.run(wait_until_ready(settings, [process], 120))
        yield process
    finally:
        process.stop()


def state_of(settings: Settings, execution_id: str):  # type: ignore[no-untyped-def]
    stored = asyncio.run(read_checkpoint(settings, execution_id))
    assert stored is not None
    return state_from_dict(stored["state"])


def test_retry_runs_the_failed_step_again_and_the_execution_completes(
    engine: tuple[Settings, dict[str, str], Path], worker: WorkerProcess
) -> None:
    settings = engine[0]

    async def scenario() -> tuple[str, str, str]:
        async with WorkflowClient(settings) as client:
            execution_id = await client.start_workflow("fails-once", {}, "t", "u")
            first = await client.wait_for(execution_id, timeout=30)
            await wait_for_checkpoints(settings, [execution_id])  # failed, in the table too
            run = await client.replay(execution_id, ReplayAction.RETRY, requested_by="ops")
            again = await client.wait_for(execution_id, timeout=30, run=run)
            return execution_id, first.status, again.status

    execution_id, first, again = asyncio.run(scenario())
    assert (first, again) == ("failed", "completed")
    state = state_of(settings, execution_id)
    assert [state.steps[s].attempt for s in "abc"] == [1, 2, 1]
    assert state.failure is None and state.generation == 1
    # The audit trail: the request, and the execution's row now completed, without error.
    replays, execution = asyncio.run(audit_rows(settings, execution_id))
    assert [(r["action"], r["requested_by"]) for r in replays] == [("retry", "ops")]
    assert (execution["status"], execution["error"]) == ("completed", None)


def test_rerun_from_a_step_runs_it_and_its_dependents_again_once_per_request(
    engine: tuple[Settings, dict[str, str], Path], worker: WorkerProcess
) -> None:
    settings = engine[0]
    names = TopicNames.for_prefix(settings.topic_prefix)

    async def scenario() -> str:
        async with WorkflowClient(settings) as client:
            execution_id = await client.start_workflow("noop-diamond", {}, "t", "u")
            assert (await client.wait_for(execution_id, timeout=30)).status == "completed"
            await wait_for_checkpoints(settings, [execution_id])
            with pytest.raises(ReplayRefused, match="retry applies to a failed execution"):
                await client.replay(execution_id, ReplayAction.RETRY)
            with pytest.raises(ReplayRefused, match="its steps: a, b, c, d"):
                await client.replay(execution_id, ReplayAction.RERUN_FROM, step_id="x")
            rerun = {"step_id": "b", "request_id": f"rerun-b-{execution_id}"}
            run = await client.replay(execution_id, ReplayAction.RERUN_FROM, **rerun)
            assert run == 1
            assert (await client.wait_for(execution_id, 30, run=run)).status == "completed"
            await wait_for_checkpoints(settings, [execution_id])
            # The operator repeats the command: the same run, nothing sent. And the
            # broker redelivers the request: the coordinator ignores it. The next
            # request, behind it in the partition, is then run 2.
            assert await client.replay(execution_id, ReplayAction.RERUN_FROM, **rerun) == 1
            requests = await read_topic(settings, names.replay)
            again = next(e.record for e in requests if e.record["execution_id"] == execution_id)
            await client.send_raw(
                names.replay, CODEC.encode("ReplayRequested", again), execution_id.encode()
            )
            run = await client.replay(execution_id, ReplayAction.RERUN_FROM, step_id="c")
            assert run == 2
            assert (await client.wait_for(execution_id, 30, run=run)).status == "completed"
            return execution_id

    execution_id = asyncio.run(scenario())
    completed = asyncio.run(
        read_topic(
            settings,
            names.step_completed,
            until=lambda es: sum(e.record["execution_id"] == execution_id for e in es) >= 8,
        )
    )
    ran = sorted(
        (e.record["step_id"], e.record["attempt"])
        for e in completed
        if e.record["execution_id"] == execution_id
    )
    assert ran == [("a", 1), ("b", 1), ("b", 2), ("c", 1), ("c", 2), ("d", 1), ("d", 2), ("d", 3)]
    assert state_of(settings, execution_id).generation == 2


def test_a_request_for_an_unknown_execution_is_dead_lettered_with_the_reason(
    engine: tuple[Settings, dict[str, str], Path], worker: WorkerProcess
) -> None:
    settings = engine[0]
    names = TopicNames.for_prefix(settings.topic_prefix)
    record = {
        "event_id": "r-1",
        "execution_id": "no-such-execution",
        "workflow_id": "noop-diamond",
        "workflow_version": 1,
        "tenant_id": "t",
        "user_id": "u",
        "timestamp": 1,
        "request_id": "r-1",
        "action": "resume",
        "step_id": None,
    }

    async def scenario() -> list[str]:
        async with WorkflowClient(settings, follow_outcomes=False) as client:
            value = CODEC.encode("ReplayRequested", record)
            await client.send_raw(names.replay, value, key=b"no-such-execution")
        letters = await read_topic(
            settings,
            names.dead_letter,
            until=lambda es: any(e.record["source_topic"] == names.replay for e in es),
        )
        return [e.record["error"] for e in letters if e.record["source_topic"] == names.replay]

    assert asyncio.run(scenario()) == [
        "UnknownExecution: ReplayRequested for unknown execution no-such-execution"
    ]


def test_a_cancel_in_the_middle_of_a_running_diamond_ends_it_and_starts_nothing_new(
    engine: tuple[Settings, dict[str, str], Path], worker: WorkerProcess
) -> None:
    """b and c are running when an operator cancels: the execution ends as cancelled at
    once, d is never released, b's and c's completions are recorded as ignored reports,
    `explain` says why d does not run, and a second cancel is refused."""
    settings, env, _ = engine
    names = TopicNames.for_prefix(settings.topic_prefix)
    execution_id = "replay-cancel-diamond"

    async def start() -> None:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("slow-diamond", {}, "t", "u", execution_id)
            await client.flush()
        await read_topic(  # b and c were released: they are running
            settings,
            names.step_ready,
            until=lambda events: (
                {e.record["step_id"] for e in events if e.record["execution_id"] == execution_id}
                >= {"b", "c"}
            ),
        )

    asyncio.run(start())
    cancelled = cli(
        env, "cancel", execution_id, "--reason", "duplicate request", "--by", "ops", "--wait"
    )
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{execution_id}: run 1 cancelled"

    reports = asyncio.run(  # b and c finish after the cancel
        read_topic(
            settings,
            names.step_completed,
            until=lambda events: (
                {
                    e.record["step_id"]
                    for e in events
                    if e.name == "StepCompleted" and e.record["execution_id"] == execution_id
                }
                >= {"b", "c"}
            ),
        )
    )
    assert reports
    explained = cli(env, "explain", execution_id, "-o", "json")
    assert explained.returncode == 0, explained.stderr
    answer = json.loads(explained.stdout)
    assert answer["status"] == "cancelled"
    assert answer["steps"]["d"] == "cancelled: duplicate request"
    state = state_of(settings, execution_id)
    assert state.steps["d"].status is StepStatus.WAITING  # never released
    ready = asyncio.run(read_topic(settings, names.step_ready))
    assert "d" not in {
        e.record["step_id"] for e in ready if e.record["execution_id"] == execution_id
    }
    again = cli(env, "cancel", execution_id, "--reason", "again")
    assert again.returncode == 2
    assert "cancel applies to an execution that has not ended" in again.stderr
    described = cli(
        env,
        *("describe", execution_id, "-o", "json"),
        until=lambda r: (
            r.returncode == 0
            and json.loads(r.stdout)["status"] == "cancelled"
            and len(json.loads(r.stdout).get("ignored_reports", [])) == 2
        ),
    )
    record = json.loads(described.stdout)
    assert record["status"] == "cancelled" and record["error"] == "duplicate request"
    recorded = {(s["step_id"], s["status"]) for s in record["steps"]}
    assert recorded == {("a", "completed")}  # b's and c's reports came after the end
    ignored = {(i["step_id"], i["report"], i["reason"]) for i in record["ignored_reports"]}
    assert ignored == {
        ("b", "completed", "the execution has ended (cancelled)"),
        ("c", "completed", "the execution has ended (cancelled)"),
    }


def test_resume_recovers_an_execution_whose_step_ready_event_was_lost(
    engine: tuple[Settings, dict[str, str], Path], worker: WorkerProcess
) -> None:
    """(Last in this module: it kills the module's worker.) The worker dies while b runs,
    after the coordinator committed the event that
    released b (so nothing is redelivered); while it is down, b's step-ready record is
    deleted (as retention would). The replacement has nothing to run: the execution is
    stuck until an operator resumes it (or, later, the watchdog)."""
    settings, env, workdir = engine
    names = TopicNames.for_prefix(settings.topic_prefix)

    execution_id = asyncio.run(lose_step_ready(settings, worker, "slow-second", "b"))
    replacement = WorkerProcess("replay-w2", env, workdir)
    try:
        asyncio.run(wait_until_ready(settings, [replacement], 120))
        # Stuck: b is running in the checkpoint, and no step-ready is left to run it.
        assert str(state_of(settings, execution_id).steps["b"].status) == "running"
        pending = asyncio.run(read_topic(settings, names.step_ready))
        assert not [e for e in pending if e.record["execution_id"] == execution_id]
        listed = subprocess.run(
            [sys.executable, "-m", "stepstream", "stalled", "--all"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert f"{execution_id}: b: running, attempt 1, for " in listed.stdout

        result = subprocess.run(  # the operator's command line, as documented
            [
                sys.executable,
                "-m",
                "stepstream",
                "replay",
                execution_id,
                "resume",
                "--wait",
                "--timeout",
                "60",
                "--by",
                "ops",
                "--reason",
                "step-ready lost",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"{execution_id}: run 1 completed" in result.stdout
        assert state_of(settings, execution_id).steps["b"].attempt == 1  # same attempt
        expected = f"{execution_id}: completed (slow-second v1, replayed 1x)"
        shown = cli(  # rich wraps the title to the table's width
            env, "status", execution_id, until=lambda r: expected in " ".join(r.stdout.split())
        )
        assert expected in " ".join(shown.stdout.split()), shown.stdout + shown.stderr
    finally:
        replacement.stop()


async def audit_rows(settings: Settings, execution_id: str) -> tuple[list[Any], Any]:
    """The execution's replay requests and its row, once the persister has written both
    (it writes in batches, off the coordinator's path)."""
    connection = await asyncpg.connect(settings.database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            replays = await connection.fetch(
                "SELECT * FROM workflow_replays WHERE execution_id = $1", execution_id
            )
            execution = await connection.fetchrow(
                "SELECT * FROM workflow_executions WHERE execution_id = $1", execution_id
            )
            if replays and execution and execution["status"] == "completed":
                return list(replays), execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"audit rows of {execution_id}: {replays}, {execution}")
    finally:
        await connection.close()
