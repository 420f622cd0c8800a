"""Built-in step types: `noop`, `sleep` and `fail` (for tests and demos)."""

from __future__ import annotations

import asyncio
from typing import Any

from stepstream.steps.packages import StepPackage
from stepstream.steps.registry import PermanentStepError, StepContext, StepRegistry

BUILTIN = StepPackage("builtin")


@BUILTIN.step("noop")
async def noop(context: StepContext) -> dict[str, Any]:
    return {"step": context.step_id}


@BUILTIN.step("sleep")
async def sleep(context: StepContext) -> dict[str, Any]:
    """Sleeps `config.seconds`, else the workflow input's `sleep_seconds`, else 0."""
    seconds = context.config.get("seconds", context.input.get("sleep_seconds", 0))
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise PermanentStepError(f"sleep needs a non-negative number of seconds, got {seconds!r}")
    await asyncio.sleep(float(seconds))
    return {"slept_seconds": seconds}


class InjectedFailure(Exception):
    """What the `fail` step raises."""


@BUILTIN.step("fail")
async def fail(context: StepContext) -> dict[str, Any]:
    """Raises on every attempt, or only on the first `config.attempts` of them (a fault
    that goes away: what an operator's retry is for); retryable unless
    `config.permanent` is true."""
    failing_attempts = context.config.get("attempts")
    if isinstance(failing_attempts, int) and context.attempt > failing_attempts:
        return {"step": context.step_id, "attempt": context.attempt}
    message = str(context.config.get("message", f"{context.step_id} failed on purpose"))
    if context.config.get("permanent", False):
        raise PermanentStepError(message)
    raise InjectedFailure(message)


def default_registry() -> StepRegistry:
    registry = StepRegistry()
    registry.include(BUILTIN)
    return registry
