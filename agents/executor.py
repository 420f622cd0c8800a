"""Executor: runs ready steps with bounded concurrency and reports how they ended.

A handler that raises, hangs past its timeout or returns something that is not JSON
produces a StepFailed event; the worker goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition

from stepstream.schemas.codec import CODEC
from stepstream.steps.registry import PermanentStepError, StepContext, StepRegistry
from stepstream.streams.engine import Engine
from stepstream.streams.events import envelope, now_ms, to_json
from stepstream.streams.groups import LagGauge, OnRevoke, commit, group_consumer, keep_running
from stepstream.streams.guard import GroupMember
from stepstream.streams.offsets import OffsetTracker

log = logging.getLogger(__name__)

COMMIT_INTERVAL_MS = 200  # also the longest a quiet executor waits for new steps


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
        item=inputs.get("item"),
        index=inputs.get("index"),
    )


async def run_step(
    registry: StepRegistry, worker: str, record: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Run one attempt; return the event name and record that report its end."""
    started_at = now_ms()
    ids = (record["step_id"], record["attempt"])
    common = {
        "step_id": record["step_id"],
        "step_type": record["step_type"],
        "attempt": record["attempt"],
        "started_at": started_at,
        "worker": worker,
    }
    try:
        handler = registry.handler_for(record["step_type"])
        # asyncio.timeout, not wait_for: wait_for runs the handler in a task of its own.
        async with asyncio.timeout(record["timeout_ms"] / 1000):
            output = await handler(context_for(record))
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


class Executor:
    """Consumes step-ready in the group `<prefix>-executor`, at most `concurrency` steps at
    once. A message's offset becomes committable once the broker has acknowledged the
    event that reports its step, so a crash re-runs a step rather than losing it (the
    coordinator ignores the second report)."""

    def __init__(self, engine: Engine, registry: StepRegistry, concurrency: int) -> None:
        self.engine = engine
        self.registry = registry
        self.slots = asyncio.Semaphore(concurrency)
        self.offsets = OffsetTracker()
        self.running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        names = self.engine.names
        consumer = group_consumer(self.engine.settings, "executor")

        async def revoked(partitions: list[TopicPartition]) -> None:
            await commit(consumer, self.offsets.take_positions())
            self.offsets.forget(partitions)

        def busy() -> set[TopicPartition]:
            if self.slots.locked():  # every slot taken: at capacity, not stuck
                return set(consumer.assignment())
            return cast(set[TopicPartition], self.offsets.running())

        consumer.subscribe([names.step_ready], listener=OnRevoke(revoked))
        await consumer.start()
        next_commit = time.monotonic()
        group = f"{self.engine.settings.topic_prefix}-executor"
        lag = LagGauge(group)
        member = GroupMember(group, consumer, busy, lambda tp: self.offsets.forget([tp]))
        self.engine.guard.watch(member)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=COMMIT_INTERVAL_MS)
                lag.measure(consumer)
                for tp, messages in batches.items():
                    for message in messages:
                        await self.slots.acquire()
                        if tp not in consumer.assignment():
                            # Fetched before a rebalance gave the partition away (the
                            # wait for a slot can span one): its new owner runs it.
                            self.slots.release()
                            continue
                        self.offsets.started(tp, message.offset)
                        task = asyncio.create_task(self.execute(tp, message))
                        self.running.add(task)
                        task.add_done_callback(self.running.discard)
                if time.monotonic() >= next_commit:
                    next_commit = time.monotonic() + COMMIT_INTERVAL_MS / 1000
                    await commit(consumer, self.offsets.take_positions())
        finally:
            self.engine.guard.unwatch(member)
            for task in self.running:
                task.cancel()
            await commit(consumer, self.offsets.take_positions())
            await consumer.stop()

    async def execute(self, tp: TopicPartition, message: ConsumerRecord[bytes, bytes]) -> None:
        try:
            delivered = await self.report(message)
        except Exception as error:
            log.exception("executor failed on %s/%s/%s", tp.topic, tp.partition, message.offset)
            delivered = await self.engine.dead_letter(message, error)
        finally:
            self.slots.release()

        def acknowledged(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                # Not committable: the partition stays at this offset, so the step runs
                # again after a restart or a rebalance.
                log.error("executor: report of %s/%s not delivered", tp, message.offset)
                return
            self.offsets.finished(tp, message.offset)

        delivered.add_done_callback(acknowledged)

    async def report(self, message: ConsumerRecord[bytes, bytes]) -> asyncio.Future[Any]:
        names = self.engine.names
        decoded = CODEC.decode(message.value or b"")
        if decoded.name != "StepReady":
            return await self.engine.dead_letter(
                message, f"unexpected {decoded.name} on {names.step_ready}"
            )
        name, record = await run_step(self.registry, self.engine.options.name, decoded.record)
        return await self.engine.send(names.step_completed, record["execution_id"], name, record)


def install(engine: Engine, registry: StepRegistry) -> None:
    @engine.app.task  # type: ignore[untyped-decorator]
    async def run_executor() -> None:
        concurrency = engine.options.executor_concurrency
        await keep_running("executor", lambda: Executor(engine, registry, concurrency).run())
