"""A step package for the fan-out tests (`worker --steps`): an instance that reports its
item, and fails for good on an item that asks it to."""

from __future__ import annotations

from typing import Any

from stepstream import PermanentStepError, StepContext, StepPackage

steps = StepPackage("fan-out-tests")


@steps.step("ITEM_ECHO")
async def item_echo(context: StepContext) -> dict[str, Any]:
    if isinstance(context.item, dict) and context.item.get("fail"):
        raise PermanentStepError(f"item {context.index} asked to fail")
    return {"item": context.item, "index": context.index, "key": context.idempotency_key}
