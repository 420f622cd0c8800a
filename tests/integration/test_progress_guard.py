"""No partition is left behind: an event dropped inside the engine's drain path (the
intake's per-event loop, the coordinator's batches) holds its partition's commit for
good, and nothing fetches it again. The progress guard sees the commit stand still with
records waiting, says so, and seeks the partition back: the execution completes without
a restart. With the guard off (its bound out of reach) both executions stay stuck."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import (
    WorkerProcess,
    cli,
    engine_env,
    prepare,
    sleep_diamond,
    wait_until_ready,
)

DIAMOND = sleep_diamond("guard-diamond", 0.01)


async def test_a_dropped_start_and_a_dropped_report_are_read_again_without_a_restart(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    start_lost, report_lost = f"{run_token}-start-lost", f"{run_token}-report-lost"
    lost_tenant = f"{run_token}-tenant"  # starts are keyed by tenant, reports by execution
    env = engine_env(
        settings,
        f"test-{run_token}-guard",
        STEPSTREAM_STALL_SECONDS="3",
        # Only the guard may recover them: the watchdog's margin is out of the test's reach.
        WORKFLOW_WATCHDOG_MARGIN_MS="600000",
        STEPSTREAM_TEST_DROP=f"workflow-start={lost_tenant},step-completed={report_lost}",
    )
    engine = Settings.from_env(env)
    await prepare(engine, DIAMOND)
    worker = WorkerProcess(
        "guard-w1", env, tmp_path, ("--steps", "tests.integration.dropped_event")
    )
    try:
        await wait_until_ready(engine, [worker], 120)
        async with WorkflowClient(engine) as client:
            await client.start_workflow("guard-diamond", {}, lost_tenant, "u", start_lost)
            await client.start_workflow("guard-diamond", {}, "t", "u", report_lost)
            outcomes = await asyncio.gather(
                client.wait_for(start_lost, timeout=90), client.wait_for(report_lost, timeout=90)
            )
        assert [outcome.status for outcome in outcomes] == ["completed", "completed"]
        log = worker.log_path.read_text()
        dropped = re.findall(r"fault: dropped \S+\.(workflow-start|step-completed)/(\d+)/", log)
        assert sorted(topic for topic, _ in dropped) == ["step-completed", "workflow-start"]
        for topic, partition in dropped:
            assert re.search(
                rf"progress guard: test-{run_token}-guard-engine \S+\.{topic}/{partition} stalled:"
                r" committed offset \d+ for \d+ s with records up to \d+ waiting",
                log,
            ), log[-3000:]
    finally:
        worker.stop()


async def test_a_start_with_no_outcome_is_listed_by_stalled_and_announced_again(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    """The start watchdog on its own (the guard's bound out of reach): a start request
    past the engine group's commit with no outcome past the margin is shown by
    `stepstream stalled`, and a worker whose intake dropped it publishes it again."""
    execution_id, tenant = f"{run_token}-unstarted", f"{run_token}-tenant"
    env = engine_env(
        settings,
        f"test-{run_token}-starts",
        STEPSTREAM_STALL_SECONDS="100000",
        WORKFLOW_WATCHDOG_MARGIN_MS="2000",
        STEPSTREAM_TEST_DROP=f"workflow-start={tenant}",
    )
    engine = Settings.from_env(env)
    await prepare(engine, DIAMOND)
    async with WorkflowClient(engine) as client:
        await client.start_workflow("guard-diamond", {}, tenant, "u", execution_id)
        await client.flush()
    listed = cli(env, "stalled", until=lambda r: execution_id in r.stdout, timeout=30)
    assert re.search(rf"{execution_id}: start requested \d+ s ago, not started", listed.stdout)

    fault = ("--steps", "tests.integration.dropped_event")
    worker = WorkerProcess("starts-w1", env, tmp_path, fault)
    try:
        await wait_until_ready(engine, [worker], 120)
        async with WorkflowClient(engine) as client:
            # A later start on the same fresh partition, processed: the commit must still
            # not pass the dropped one (it did: faust reads an uncommitted head as none).
            later = await client.start_workflow(
                "guard-diamond", {}, tenant, "u", f"{execution_id}-2"
            )
            assert (await client.wait_for(later, timeout=60)).status == "completed"
            outcome = await client.wait_for(execution_id, timeout=60)
        assert outcome.status == "completed"
        log = worker.log_path.read_text()
        assert "fault: dropped" in log
        assert f"start watchdog: the start of {execution_id} " in log
        assert "progress guard: " not in log  # the watchdog, not the guard, brought it back
        after = cli(env, "stalled", until=lambda r: execution_id not in r.stdout, timeout=30)
        assert execution_id not in after.stdout
    finally:
        worker.stop()


async def test_a_backlog_of_starts_is_worked_through_not_announced_again(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    """Starts queued behind an intake that is slow but moving are not lost: the start
    watchdog leaves them to the intake, however long past its margin they wait. (It
    announced each of them again, so that at saturation the intake did half its work
    twice.)"""
    tenant, count = f"{run_token}-tenant", 300  # one tenant: one partition of starts
    env = engine_env(
        settings,
        f"test-{run_token}-backlog",
        WORKFLOW_WATCHDOG_MARGIN_MS="2000",
        STEPSTREAM_TEST_INTAKE_MS="50",  # 300 starts: 15 s of backlog, 7 margins
    )
    engine = Settings.from_env(env)
    await prepare(engine, DIAMOND)
    fault = ("--steps", "tests.integration.slow_intake")
    worker = WorkerProcess("backlog-w1", env, tmp_path, fault)
    try:
        await wait_until_ready(engine, [worker], 120)
        async with WorkflowClient(engine) as client:
            ids = [
                await client.start_workflow("guard-diamond", {}, tenant, "u", f"{run_token}-{i}")
                for i in range(count)
            ]
            outcomes = await asyncio.gather(*(client.wait_for(i, timeout=120) for i in ids))
        assert {outcome.status for outcome in outcomes} == {"completed"}
        log = worker.log_path.read_text()
        assert "start watchdog: the start of" not in log, log[-3000:]
    finally:
        worker.stop()
