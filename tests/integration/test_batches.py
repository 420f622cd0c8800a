"""The coordinator hands a batch over as soon as nothing more is waiting: the batch window
bounds how long a batch may grow while events keep coming, it is never a wait.

With a ten-minute window, an engine that waited out the window would take ten minutes per
coordinator event (five per diamond); these executions must complete within a minute.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import NOOP_DIAMOND, engine_env, prepare, running_worker

TEN_MINUTES_MS = "600000"


def test_a_long_batch_window_delays_nothing(
    settings: Settings, kafka_bootstrap: str, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(
        settings, f"test-{run_token}-window", STEPSTREAM_BATCH_WINDOW_MS=TEN_MINUTES_MS
    )
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, NOOP_DIAMOND))
    with running_worker(engine, env, "window-w1", tmp_path):  # its probe completed already

        async def run() -> None:
            async with WorkflowClient(engine) as client:
                alone = await client.start_workflow("noop-diamond", {}, "t", f"a{run_token}")
                assert (await client.wait_for(alone, timeout=60)).status == "completed"
                burst = [
                    await client.start_workflow("noop-diamond", {}, f"t{n % 4}", f"b{n}")
                    for n in range(300)
                ]
                outcomes = await asyncio.gather(*(client.wait_for(i, timeout=60) for i in burst))
                assert {o.status for o in outcomes} == {"completed"}

        asyncio.run(run())
