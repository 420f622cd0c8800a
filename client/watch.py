"""Follow one execution: the coordinator's step decisions and outcome events, and its
checkpoint.

Every execution topic is keyed by execution_id, so one partition of each holds all of
an execution's events: the watcher reads only those partitions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from stepstream.schemas.codec import CODEC, DecodedEvent, EventCodecError
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.pending_starts import PendingStart, pending_starts
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows.checkpoint import (
    DEFINITION_KEY_PREFIX,
    definition_key,
    definition_ref,
    merge_parts,
    split_part_key,
)
from stepstream.workflows.retention import RETIRE_PREFIX, RUNNING_PREFIX
from stepstream.workflows.timers import TIMER_PREFIX

INDEX_KEYS = (RUNNING_PREFIX.encode(), RETIRE_PREFIX.encode(), TIMER_PREFIX.encode())

TERMINAL_EVENTS = {
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowRejected",
    "WorkflowCancelled",
}


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives this key."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class StepView:
    step_id: str
    status: str = "waiting"
    attempt: int = 0
    ready_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    worker: str = ""
    detail: str = ""


@dataclass
class ExecutionView:
    """What the events of one execution say so far."""

    execution_id: str
    steps: dict[str, StepView] = field(default_factory=dict)
    outcome: str | None = None
    detail: str = ""

    def apply(self, event: DecodedEvent) -> None:
        """Steps change only by the coordinator's decisions (and step-ready, for built-in
        steps): a worker's report is never shown, since it may be one that did not count."""
        record = event.record
        if event.name in TERMINAL_EVENTS:
            self.outcome = {
                "WorkflowCompleted": "completed",
                "WorkflowFailed": "failed",
                "WorkflowRejected": "rejected",
                "WorkflowCancelled": "cancelled",
            }[event.name]
            self.detail = record.get("reason") or record.get("error") or ""
            return
        status = step_status(event)
        if status is None:
            return  # a report, a heartbeat, an ignored report: not a step's state
        step = self.steps.setdefault(record["step_id"], StepView(record["step_id"]))
        if event.name == "StepReady":
            if record["attempt"] < step.attempt:
                return  # a copy of an older release
            step.attempt, step.status, step.ready_at = (
                record["attempt"],
                status,
                record["timestamp"],
            )
            step.started_at = step.finished_at = None
        elif event.name == "StepSkipped":
            step.status, step.detail = status, record["reason"]
        else:  # StepAttemptEnded
            if record["attempt"] < step.attempt:
                return  # a decision on an older attempt, seen after the newer release
            step.attempt, step.status = record["attempt"], status
            step.started_at, step.finished_at = record["started_at"], record["finished_at"]
            step.worker = record["worker"] or ""
            step.detail = record["error"] or ""


def step_status(event: DecodedEvent) -> str | None:
    """The step state an event shows: running, completed, retrying (failed or timed out,
    another attempt follows), failed, timed_out, skipped; None for anything else."""
    if event.name == "StepReady":
        return "running"
    if event.name == "StepSkipped":
        return "skipped"
    if event.name != "StepAttemptEnded" or event.record["outcome"] == "ignored":
        return None
    outcome: str = event.record["outcome"]
    return "retrying" if event.record["will_retry"] else outcome


class ExecutionWatcher:
    """Open before starting the execution, then iterate its events until it ends."""

    def __init__(self, settings: Settings, execution_id: str) -> None:
        names = TopicNames.for_prefix(settings.topic_prefix)
        partition = partition_for(execution_id, settings.topic_partitions)
        self.execution_id = execution_id
        self.partitions = [
            TopicPartition(topic, partition)
            for topic in (
                names.step_ready,
                names.step_outcomes,
                names.workflow_completed,
                names.workflow_rejected,
            )
        ]
        self.consumer = AIOKafkaConsumer(
            **kafka_access(settings).client_options(), enable_auto_commit=False
        )

    async def __aenter__(self) -> ExecutionWatcher:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_end(*self.partitions)
        for partition in self.partitions:
            await self.consumer.position(partition)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def events(self) -> AsyncIterator[DecodedEvent]:
        """The execution's events until its outcome, then what the other topics hold up
        to their ends: the coordinator publishes its last decisions before the outcome,
        but a reader may fetch the outcome's partition first."""
        async for message in self.consumer:
            event = self.decoded(message)
            if event is None:
                continue
            yield event
            if event.name in TERMINAL_EVENTS:
                break
        else:
            return
        ends = await self.consumer.end_offsets(self.partitions)
        while not await self.reached(ends):
            batches = await self.consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    if (event := self.decoded(message)) is not None:
                        yield event

    async def reached(self, ends: dict[TopicPartition, int]) -> bool:
        for partition, end in ends.items():
            if await self.consumer.position(partition) < end:
                return False
        return True

    def decoded(self, message: Any) -> DecodedEvent | None:
        if message.key != self.execution_id.encode():
            return None
        try:
            return CODEC.decode(message.value)
        except EventCodecError:
            return None


async def rewind(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Assign the partitions at their beginning; return their current end offsets.

    The seek is resolved before the ends are asked for: aiokafka applies
    `seek_to_beginning` lazily, and asking for end offsets first can leave the
    positions at the end (seen with aiokafka 0.14).
    """
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    return dict(await consumer.end_offsets(partitions))


def reader(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """A consumer outside any consumer group that reads from the earliest offset: for
    tools, tests and benchmarks that read topics without taking part in the engine."""
    return AIOKafkaConsumer(
        **kafka_access(settings).client_options(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )


def changelog_topic(settings: Settings, table: str = "executions") -> str:
    return f"{settings.topic_prefix}-engine-{table}-changelog"


async def read_changelog(
    settings: Settings, table: str, partitions: list[int] | None = None
) -> dict[str, Any]:
    """Latest value of every key of a table in the given partitions (all by default),
    read from its changelog up to the current end."""
    topic = changelog_topic(settings, table)
    consumer = reader(settings)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return {}
        numbers = partitions if partitions is not None else range(settings.topic_partitions)
        assigned = [TopicPartition(topic, number) for number in numbers]
        ends = await rewind(consumer, assigned)
        latest: dict[str, Any] = {}
        for partition in assigned:
            while await consumer.position(partition) < ends[partition]:
                batches = await consumer.getmany(partition, timeout_ms=1000)
                for message in batches.get(partition, []):
                    if message.key is None or message.key.startswith(INDEX_KEYS):
                        continue  # the coordinator's indexes: not JSON, not checkpoints
                    if message.value:
                        latest[message.key.decode()] = json.loads(message.value)
                    else:
                        latest.pop(message.key.decode(), None)
        return latest
    finally:
        await consumer.stop()


async def read_checkpoints(
    settings: Settings, partitions: list[int] | None = None
) -> dict[str, dict[str, Any]]:
    """Latest checkpoint of every execution (the executions table's changelog), whole:
    a large execution's parts merged in, and its definition, which the coordinator keeps
    once per partition and names by id and version in checkpoints, put back."""
    latest = await read_changelog(settings, "executions", partitions)
    definitions = {k: v for k, v in latest.items() if k.startswith(DEFINITION_KEY_PREFIX)}
    parts: dict[str, dict[int, Any]] = {}
    checkpoints = {}
    for key, value in latest.items():
        if key in definitions:
            continue
        part = split_part_key(key)
        if part is None:
            checkpoints[key] = value
        else:
            parts.setdefault(part[0], {})[part[1]] = value
    for execution_id, checkpoint in checkpoints.items():
        checkpoint["state"] = merge_parts(checkpoint["state"], parts.get(execution_id, {}))
        ref = definition_ref(checkpoint["state"])
        if ref is not None and definition_key(*ref) in definitions:
            checkpoint["state"]["def"] = definitions[definition_key(*ref)]
    return checkpoints


async def read_checkpoint(settings: Settings, execution_id: str) -> dict[str, Any] | None:
    """One execution's latest checkpoint: only its changelog partition is read."""
    partition = partition_for(execution_id, settings.topic_partitions)
    return (await read_checkpoints(settings, [partition])).get(execution_id)


async def stalled_starts(settings: Settings, now_ms: int) -> list[PendingStart]:
    """Start requests the engine group has not committed past, older than the watchdog's
    margin, whose execution the intake's `started` table does not hold: skipped, or
    waiting behind a stalled partition. Only what is past the commit is read."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**kafka_access(settings).client_options())
    consumer = reader(settings)
    await admin.start()
    await consumer.start()
    try:
        partitions = [
            TopicPartition(names.workflow_start, p) for p in range(settings.topic_partitions)
        ]
        group = f"{settings.topic_prefix}-engine"
        pending = await pending_starts(admin, consumer, group, partitions)
    finally:
        await consumer.stop()
        await admin.close()
    old = [p for p in pending if p.requested_at_ms <= now_ms - settings.watchdog_margin_ms]
    if not old:
        return []
    started = await read_changelog(settings, "started", sorted({p.partition for p in old}))
    return [p for p in old if p.execution_id not in started]


async def wait_for_commits(
    settings: Settings, group: str, topics: list[str], timeout: float = 30.0
) -> dict[TopicPartition, int]:
    """The group's committed positions once they reach the current ends of `topics` (a
    partition nothing was written to needs no commit). For tests and benchmarks: a
    group that has committed everything has finished with what was written so far."""
    admin = AIOKafkaAdminClient(**kafka_access(settings).client_options())
    probe = reader(settings)
    await admin.start()
    await probe.start()
    try:
        count = settings.topic_partitions
        partitions = [TopicPartition(t, p) for t in topics for p in range(count)]
        ends = await probe.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while True:
            offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
            committed = {tp: max(meta.offset, 0) for tp, meta in offsets.items() if meta}
            if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
                return committed
            if time.monotonic() > deadline:
                raise TimeoutError(f"{group} committed {committed}, the ends are {ends}")
            await asyncio.sleep(0.05)  # between polls of the broker
    finally:
        await probe.stop()
        await admin.close()
