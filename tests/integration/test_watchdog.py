"""A lost event costs time, never the execution: the watchdog finds an execution whose
running step went silent past its timeout plus the margin, and announces it again."""

from __future__ import annotations

from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import (
    SLOW_SECOND,
    WorkerProcess,
    engine_env,
    lose_step_ready,
    prepare,
    wait_until_ready,
)


async def test_an_execution_whose_step_ready_was_lost_completes_on_its_own(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-watchdog", WORKFLOW_WATCHDOG_MARGIN_MS="1000")
    engine = Settings.from_env(env)
    await prepare(engine, SLOW_SECOND)
    first = WorkerProcess("watchdog-w1", env, tmp_path)
    replacement = None
    try:
        await wait_until_ready(engine, [first], 120)
        execution_id = await lose_step_ready(engine, first, "slow-second", "b")
        replacement = WorkerProcess("watchdog-w2", env, tmp_path)
        async with WorkflowClient(engine) as client:
            await wait_until_ready(engine, [replacement], 120)
            outcome = await client.wait_for(execution_id, timeout=60)
        assert outcome.status == "completed"
        log = replacement.log_path.read_text()
        assert f"watchdog: execution {execution_id} made no progress; waiting on b:" in log
    finally:
        first.stop()
        if replacement is not None:
            replacement.stop()
