"""A spike for a design decision: the coordinator's work without faust, beside the engine.

    .venv/bin/python bench/batch_coordinator.py [--executions 3000]

The engine's coordinator is a faust agent over a faust table; `bench/faust_ceiling.py`
shows what that costs per event here. This measures the alternative the team would
decide on: the same codec, reducer and checkpoint encoding, driven by plain aiokafka
`getmany` batches, with the checkpoints in a dict and each one produced to a changelog
topic, and a no-op executor loop, in one process like a worker. It has no recovery, no
rebalancing, no offset commits, no intake and no persister: an upper bound for that
design, not an implementation of it. In the same run, the engine (one worker process)
does the same executions, started through the client. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pipeline import (  # a sibling script: bench/ is on the path
    DEFINITIONS,
    fresh_engine,
    saturation,
)

from stepstream.agents.coordinator_events import core_event, step_ready
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, wait_until_ready
from stepstream.schemas.codec import CODEC
from stepstream.streams.events import envelope, now_ms, to_json
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, delete_topics_with_prefix
from stepstream.workflows import (
    CompleteWorkflow,
    EmitStepReady,
    WorkflowDefinition,
    definition_to_dict,
    new_execution,
    reduce,
    state_from_dict,
    state_to_dict,
)
from stepstream.workflows.checkpoint import DefinitionMemo

NOOP_DIAMOND = DEFINITIONS[1]
ORIGIN = ("execution_id", "workflow_id", "workflow_version", "tenant_id", "user_id")


def started_event(execution_id: str, definition: WorkflowDefinition) -> bytes:
    """What the intake emits for a start it admits."""
    origin = {
        "execution_id": execution_id,
        "workflow_id": definition.id,
        "workflow_version": definition.version,
        "tenant_id": "bench",
        "user_id": "bench",
    }
    record = envelope(
        "started",
        origin,
        input_json="{}",
        definition_json=json.dumps(definition_to_dict(definition), separators=(",", ":")),
    )
    return CODEC.encode("WorkflowStarted", record)


class Spike:
    def __init__(self, bootstrap: str, names: TopicNames, changelog: str) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.changelog = changelog
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
        self.checkpoints: dict[bytes, bytes] = {}
        self.memo: DefinitionMemo = {}
        self.completed = 0
        self.first: float | None = None  # timed from the first event: group joins excluded

    def consumer(self, group: str, *topics: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )

    async def coordinate(self, key: bytes, value: bytes) -> None:
        """The agent's `handle`, minus faust: load, reduce, checkpoint, emit."""
        decoded = CODEC.decode(value)
        record = decoded.record
        stored = self.checkpoints.get(key)
        if stored is not None:
            checkpoint = json.loads(stored)
            state, origin = state_from_dict(checkpoint["state"], self.memo), checkpoint["origin"]
        else:
            pinned = (record["workflow_id"], record["workflow_version"])
            if pinned not in self.memo:
                self.memo[pinned] = NOOP_DIAMOND
            state = new_execution(
                record["execution_id"], self.memo[pinned], {}, max_parallel_steps=10
            )
            origin = {k: record[k] for k in ORIGIN}
        state, commands = reduce(state, core_event(decoded.name, record))
        checkpoint_bytes = to_json({"state": state_to_dict(state), "origin": origin}).encode()
        self.checkpoints[key] = checkpoint_bytes
        await self.producer.send(self.changelog, checkpoint_bytes, key=key)
        for command in commands:
            if isinstance(command, EmitStepReady):
                ready = step_ready(origin, command)
                value = CODEC.encode("StepReady", ready)
                await self.producer.send(self.names.step_ready, value, key=key)
            elif isinstance(command, CompleteWorkflow):
                done = envelope("completed", origin, outputs_json="{}", started_at=now_ms())
                value = CODEC.encode("WorkflowCompleted", done)
                await self.producer.send(self.names.workflow_completed, value, key=key)
                self.completed += 1

    async def execute(self, key: bytes, value: bytes) -> None:
        """The executor's report of a no-op step."""
        record = CODEC.decode(value).record
        ids = (record["step_id"], record["attempt"])
        started = now_ms()
        completed = envelope(
            "step-completed",
            record,
            *ids,
            step_id=record["step_id"],
            step_type=record["step_type"],
            attempt=record["attempt"],
            started_at=started,
            worker="spike",
            output_json=to_json({"step": record["step_id"]}),
            finished_at=now_ms(),
        )
        await self.producer.send(
            self.names.step_completed, CODEC.encode("StepCompleted", completed), key=key
        )

    async def loop(self, consumer: AIOKafkaConsumer, handle: Any, executions: int) -> None:
        while self.completed < executions:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                self.first = self.first or time.perf_counter()
                for record in records:
                    await handle(record.key, record.value)

    async def run(self, executions: int) -> float:
        prefix = self.names.executions
        coordinator = self.consumer(f"{prefix}-coordinator", prefix, self.names.step_completed)
        executor = self.consumer(f"{prefix}-executor", self.names.step_ready)
        await self.producer.start()
        await coordinator.start()
        await executor.start()
        try:
            await asyncio.gather(
                self.loop(coordinator, self.coordinate, executions),
                self.loop(executor, self.execute, executions),
            )
            await self.producer.flush()
            return executions * 4 / (time.perf_counter() - (self.first or 0))
        finally:
            await coordinator.stop()
            await executor.stop()
            await self.producer.stop()


async def spike_rate(settings: Settings, executions: int) -> float:
    prefix = f"bench-spike-{uuid.uuid4().hex[:8]}"
    names = TopicNames.for_prefix(prefix)
    changelog = f"{prefix}.changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    topics = [names.executions, names.step_ready, names.step_completed, names.workflow_completed]
    await admin.create_topics(
        [NewTopic(t, settings.topic_partitions, 1) for t in [*topics, changelog]]
    )
    await admin.close()
    filler = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    await filler.start()
    for n in range(executions):
        execution_id = f"spike-{n}"
        await filler.send(
            names.executions, started_event(execution_id, NOOP_DIAMOND), key=execution_id.encode()
        )
    await filler.stop()
    try:
        return await Spike(settings.kafka_bootstrap_servers, names, changelog).run(executions)
    finally:
        await delete_topics_with_prefix(kafka_access(settings), prefix)


async def engine_rate(executions: int) -> float:
    env, settings, workdir = await fresh_engine()
    worker = WorkerProcess("bench-worker", env, workdir, ("--concurrency", "64"))
    try:
        await wait_until_ready(settings, [worker], timeout=120)
        async with WorkflowClient(settings) as client:
            return await saturation(settings, client, executions, {worker.name: worker.process.pid})
    finally:
        worker.stop()
        await delete_topics_with_prefix(kafka_access(settings), settings.topic_prefix)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=3000)
    args = parser.parse_args()
    settings = Settings.from_env()
    print(
        f"broker {settings.kafka_bootstrap_servers}, {settings.topic_partitions} partitions, "
        f"{args.executions:,} no-op diamonds, {os.cpu_count()} cores shared with the broker"
    )
    spike = await spike_rate(settings, args.executions)
    print(f"spike: raw aiokafka coordinator + no-op executor, one process: {spike:,.0f} steps/s")
    engine = await engine_rate(args.executions)
    print(f"spike / engine = {spike / engine:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
