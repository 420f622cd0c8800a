"""Helpers for tests on the real broker: definitions, reading topics and checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from schemas.codec import CODEC, DecodedEvent, EventCodecError
from streams.settings import Settings
from streams.watch import reader, rewind
from streams.worker_process import WorkerProcess, prepare, wait_until_ready
from workflows import WorkflowDefinition, build_definition

__all__ = ["WorkerProcess", "prepare", "wait_until_ready"]


def engine_env(settings: Settings, prefix: str, **overrides: str) -> dict[str, str]:
    """The environment of an isolated engine: its own topic prefix (and consumer group).
    Rate limiting is off unless a test turns it on: it is tested on its own."""
    return {
        **os.environ,
        **settings.as_environment(),
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "4",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
        **overrides,
    }


def definition(raw: dict[str, Any]) -> WorkflowDefinition:
    return build_definition(raw)


async def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[DecodedEvent]], bool] | None = None,
    timeout: float = 30.0,
) -> list[DecodedEvent]:
    """Every decodable event on the topic from the beginning up to its current end (or, with
    `until`, until the condition holds on what was read, within `timeout`)."""
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        events: list[DecodedEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        events.append(CODEC.decode(record.value))
                    except EventCodecError:
                        continue
            if until is not None and until(events):
                return events
            if until is None and all([await consumer.position(p) >= ends[p] for p in partitions]):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition on {topic} not met within {timeout}s")
    finally:
        await consumer.stop()


async def wait_for_checkpoints(
    settings: Settings, execution_ids: list[str], timeout: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Checkpoints of these executions once every one is terminal. The changelog write
    and the outcome event are separate produces, so the outcome may be seen first."""
    from streams.watch import read_checkpoints

    deadline = time.monotonic() + timeout
    while True:
        checkpoints = await read_checkpoints(settings)
        ours = {i: checkpoints.get(i) for i in execution_ids}
        if all(c and c["state"]["st"] in ("completed", "failed") for c in ours.values()):
            return ours  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError("checkpoints did not reach a terminal state in time")


# A 4-step diamond of no-op steps (a; b and c after a; d after both), id "noop-diamond".
NOOP_DIAMOND = definition(
    {
        "id": "noop-diamond",
        "version": 1,
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop", "dependsOn": ["a"]},
            {"id": "c", "type": "noop", "dependsOn": ["a"]},
            {"id": "d", "type": "noop", "dependsOn": ["b", "c"]},
        ],
    }
)
