"""Workers joining a fresh engine while it is under load lose nothing.

Regression test for the faust/aiokafka seek problem corrected in streams.faust_fixes:
events dropped during a rebalance were never fetched again on partitions that had no
committed offset yet, and executions stopped at their WorkflowStarted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import (
    NOOP_DIAMOND,
    WorkerProcess,
    engine_env,
    prepare,
    wait_until_ready,
)


async def test_executions_started_while_the_group_rebalances_all_complete(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-scale", STEPSTREAM_TOPIC_PARTITIONS="8")
    engine = Settings.from_env(env)
    await prepare(engine, NOOP_DIAMOND)
    # Both start at once: the second joins the group while the first has just been
    # given every partition, so the rebalance lands on the load below.
    workers = [WorkerProcess(f"scale-w{n}", env, tmp_path) for n in (1, 2)]
    try:
        await wait_until_ready(engine, workers, 120)
        async with WorkflowClient(engine) as client:
            ids = [
                await client.start_workflow("noop-diamond", {}, f"t{n % 8}", f"u{n}")
                for n in range(1000)
            ]
            outcomes = await asyncio.gather(
                *(client.wait_for(i, timeout=90) for i in ids), return_exceptions=True
            )
        statuses = Counter(
            o.status if not isinstance(o, BaseException) else type(o).__name__ for o in outcomes
        )
        assert statuses == {"completed": 1000}, statuses
    finally:
        for worker in workers:
            worker.stop()
