"""A step package only the test's worker loads (`worker --steps`): the command line that
registers a definition using it does not, and learns the type from the worker's
announcement."""

from __future__ import annotations

from stepstream import StepContext, StepPackage

steps = StepPackage("worker-only")


@steps.step("WORKER_ONLY")
async def worker_only(context: StepContext) -> dict[str, str]:
    return {"ran": context.step_id}
