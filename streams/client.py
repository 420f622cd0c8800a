"""The producer side: start workflows and wait for how they end.

async with WorkflowClient(settings) as client:
    execution_id = await client.start_workflow("maintenance-request", {...}, "t1", "u1")
    outcome = await client.wait_for(execution_id, timeout=30)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import CODEC, EventCodecError
from streams.events import event_id, now_ms
from streams.settings import Settings
from streams.topics import TopicNames


@dataclass(frozen=True)
class Outcome:
    """How an execution ended: completed, failed or rejected, with the event's record."""

    execution_id: str
    status: str
    record: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.record.get("outputs_json", "{}")))


_STATUS = {
    "WorkflowCompleted": "completed",
    "WorkflowFailed": "failed",
    "WorkflowRejected": "rejected",
}


class WorkflowClient:
    def __init__(self, settings: Settings, follow_outcomes: bool = True) -> None:
        self.settings = settings
        self.names = TopicNames.for_prefix(settings.topic_prefix)
        self._follow = follow_outcomes
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=2
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._outcomes: dict[str, Outcome] = {}
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}

    async def __aenter__(self) -> WorkflowClient:
        await self._producer.start()
        if self._follow:
            await self._start_following()
        return self

    async def __aexit__(
        self, *exc: tuple[type[BaseException], BaseException, TracebackType]
    ) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()
        await self._producer.stop()

    async def _start_following(self) -> None:
        """Read the outcome topics from their current end, before anything is started."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, enable_auto_commit=False
        )
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, partition)
            for topic in (self.names.workflow_completed, self.names.workflow_rejected)
            for partition in range(self.settings.topic_partitions)
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve the positions now, not lazily later
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._collect(), name="outcomes")

    async def _collect(self) -> None:
        assert self._consumer is not None
        async for message in self._consumer:
            try:
                decoded = CODEC.decode(message.value)
            except EventCodecError:
                continue
            status = _STATUS.get(decoded.name)
            if status is None:
                continue
            outcome = Outcome(decoded.record["execution_id"], status, decoded.record)
            self._outcomes.setdefault(outcome.execution_id, outcome)
            for waiter in self._waiters.pop(outcome.execution_id, []):
                if not waiter.done():
                    waiter.set_result(outcome)

    async def start_workflow(
        self,
        workflow_id: str,
        workflow_input: Mapping[str, Any],
        tenant_id: str,
        user_id: str,
        execution_id: str | None = None,
        version: int = 0,
    ) -> str:
        """Publish a start request; returns the execution id (the idempotency key)."""
        execution_id = execution_id or str(uuid.uuid4())
        record = {
            "event_id": event_id(execution_id, "start-requested"),
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "workflow_version": version,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "timestamp": now_ms(),
            "input_json": json.dumps(dict(workflow_input), separators=(",", ":")),
        }
        await self._producer.send(
            self.names.workflow_start,
            CODEC.encode("WorkflowStartRequested", record),
            key=tenant_id.encode(),
        )
        return execution_id

    async def flush(self) -> None:
        await self._producer.flush()

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """For operators and tests: put bytes on a topic as they are."""
        await self._producer.send_and_wait(topic, value, key=key)

    async def wait_for(self, execution_id: str, timeout: float) -> Outcome:
        """The execution's outcome, or TimeoutError after `timeout` seconds."""
        await self._producer.flush()
        if execution_id in self._outcomes:
            return self._outcomes[execution_id]
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not end within {timeout:g}s"
            ) from None
