"""The diamond as a Temporal workflow of four activities, 2 and 3 gathered in parallel
(bench/peer_temporal.py). A module of its own: Temporal's worker re-imports workflow
modules in its sandbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "stepstream-peer"


@activity.defn
async def step(seconds: float) -> bool:
    if seconds:
        await asyncio.sleep(seconds)
    return True


@workflow.defn
class Diamond:
    @workflow.run
    async def run(self, seconds: float) -> None:
        timeout = timedelta(seconds=60)
        await workflow.execute_activity(step, seconds, start_to_close_timeout=timeout)
        await asyncio.gather(
            workflow.execute_activity(step, seconds, start_to_close_timeout=timeout),
            workflow.execute_activity(step, seconds, start_to_close_timeout=timeout),
        )
        await workflow.execute_activity(step, seconds, start_to_close_timeout=timeout)
