"""Executor: runs ready steps with bounded concurrency and reports how they ended.

A handler that raises, hangs past its timeout or returns something that is not JSON
produces a StepFailed event; the worker goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from faust.types import EventT, StreamT

from schemas.codec import CODEC
from steps.registry import PermanentStepError, StepContext
from streams.engine import Engine
from streams.events import envelope, now_ms, to_json

log = logging.getLogger(__name__)


def context_for(record: dict[str, Any]) -> StepContext:
    inputs = json.loads(record["inputs_json"])
    return StepContext(
        execution_id=record["execution_id"],
        workflow_id=record["workflow_id"],
        workflow_version=record["workflow_version"],
        step_id=record["step_id"],
        step_type=record["step_type"],
        attempt=record["attempt"],
        idempotency_key=record["idempotency_key"],
        tenant_id=record["tenant_id"],
        user_id=record["user_id"],
        input=inputs.get("input", {}),
        steps=inputs.get("steps", {}),
        config=json.loads(record["config_json"]),
    )


async def run_step(engine: Engine, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Run one attempt; return the event name and record that report its end."""
    started_at = now_ms()
    ids = (record["step_id"], record["attempt"])
    common = {
        "step_id": record["step_id"],
        "step_type": record["step_type"],
        "attempt": record["attempt"],
        "started_at": started_at,
        "worker": engine.options.name,
    }
    try:
        handler = engine.registry.handler_for(record["step_type"])
        output = await asyncio.wait_for(handler(context_for(record)), record["timeout_ms"] / 1000)
        output_json = to_json(output)
    except Exception as error:  # noqa: BLE001 - every failure becomes a StepFailed event
        timed_out = isinstance(error, TimeoutError)
        retryable = not isinstance(error, PermanentStepError | TypeError | ValueError)
        message = f"no result within {record['timeout_ms']} ms" if timed_out else str(error)
        failed = envelope(
            "step-failed",
            record,
            *ids,
            **common,
            error_type=type(error).__name__,
            error_message=message,
            retryable=retryable or timed_out,
            finished_at=now_ms(),
        )
        return "StepFailed", failed
    return "StepCompleted", envelope(
        "step-completed", record, *ids, **common, output_json=output_json, finished_at=now_ms()
    )


def install(engine: Engine) -> None:
    names = engine.names

    async def handle(event: EventT[Any]) -> None:
        decoded = CODEC.decode(event.value)
        if decoded.name != "StepReady":
            await engine.dead_letter(event, f"unexpected {decoded.name} on {names.step_ready}")
            return
        name, record = await run_step(engine, decoded.record)
        await engine.send(names.step_completed, record["execution_id"], name, record)

    @engine.app.agent(
        engine.topics[names.step_ready],
        name="executor",
        concurrency=engine.options.executor_concurrency,
    )
    async def executor(stream: StreamT[Any]) -> None:
        await engine.consume(stream, handle)
