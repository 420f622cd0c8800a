"""The producer side: start workflows and wait for how they end.

async with WorkflowClient(settings) as client:
    execution_id = await client.start_workflow("maintenance-request", {...}, "t1", "u1")
    outcome = await client.wait_for(execution_id, timeout=30)
    # an operator, later:
    run = await client.replay(execution_id, ReplayAction.RETRY, requested_by="ops")
    outcome = await client.wait_for(execution_id, timeout=30, run=run)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stepstream.client.events import EventNotSent, event_sent
from stepstream.client.tasks import HumanTasks
from stepstream.client.watch import read_checkpoint
from stepstream.infra.executions import ExecutionRecord, describe_execution
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.definitions import DefinitionCatalog
from stepstream.streams.events import event_id, legacy_event_id, now_ms
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, require_topics
from stepstream.workflows import ReplayAction, WorkflowDefinition, replay_applies, state_from_dict
from stepstream.workflows.requests import Refusal, check_start


class ReplayRefused(ValueError):
    """The execution is not in a state the requested action applies to."""


class StartRefused(ValueError):
    """A start request the engine would reject; it was not published."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.code = refusal.code


APPLIES_TO = {
    ReplayAction.RESUME: "a running execution",
    ReplayAction.RETRY: "a failed execution",
    ReplayAction.RERUN_FROM: "an ended execution, from one of its steps",
    ReplayAction.CANCEL: "an execution that has not ended",
}


@dataclass(frozen=True)
class Outcome:
    """How an execution ended: completed, failed, rejected or cancelled, with the event's
    record."""

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
    "WorkflowCancelled": "cancelled",
}


class WorkflowClient:
    def __init__(self, settings: Settings, follow_outcomes: bool = True) -> None:
        self.settings = settings
        self.names = TopicNames.for_prefix(settings.topic_prefix)
        self._follow = follow_outcomes
        self._producer = AIOKafkaProducer(
            **kafka_access(settings).client_options(), acks="all", linger_ms=2
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._outcomes: dict[str, list[Outcome]] = {}  # every outcome seen, in order
        self._waiters: dict[str, list[tuple[set[str] | None, asyncio.Future[Outcome]]]] = {}
        self._catalog: DefinitionCatalog | None = None
        self._database: asyncpg.Connection | None = None
        self._events_topic_checked = False
        self.tasks = HumanTasks(self)  # human tasks: the open ones, and answers

    async def __aenter__(self) -> WorkflowClient:
        names = self.names
        try:
            await require_topics(
                kafka_access(self.settings),
                [names.workflow_start, names.replay, names.workflow_completed],
            )
            await self._producer.start()
            if self._follow:
                await self._start_following()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._catalog:
            await self._catalog.stop()
        if self._database:
            await self._database.close()
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
            **kafka_access(self.settings).client_options(), enable_auto_commit=False
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
            self._outcomes.setdefault(outcome.execution_id, []).append(outcome)
            waiting = self._waiters.get(outcome.execution_id, [])
            for ids, waiter in list(waiting):
                if ids is None or outcome.record["event_id"] in ids:
                    waiting.remove((ids, waiter))
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
        execution_id = str(uuid.uuid4()) if execution_id is None else execution_id
        input_json = json.dumps(dict(workflow_input), separators=(",", ":"))
        refusal = check_start(
            execution_id,
            workflow_id,
            tenant_id,
            user_id,
            input_json,
            self.settings.max_input_bytes,
        )
        if refusal is not None:
            raise StartRefused(refusal)
        record = {
            "event_id": event_id(execution_id, "start-requested"),
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "workflow_version": version,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "timestamp": now_ms(),
            "input_json": input_json,
        }
        await self._producer.send(
            self.names.workflow_start,
            CODEC.encode("WorkflowStartRequested", record),
            key=tenant_id.encode(),
        )
        return execution_id

    async def send_event(
        self,
        name: str,
        correlation_key: str,
        payload: Mapping[str, Any] | None,
        tenant_id: str,
        event_id: str | None = None,
        ttl_seconds: float | None = None,
        sender: str | None = None,
    ) -> str:
        """Send an event to the tenant's executions that wait for `name` with this
        correlation key (one of them: the oldest wait), or that will within the event's
        time to live. Returns the event's id: send it again with the same id and it is
        applied once."""
        record = event_sent(
            name,
            correlation_key,
            payload,
            tenant_id,
            event_id=event_id,
            ttl_seconds=ttl_seconds,
            sender=sender,
        )
        await self._send_event(record)
        return str(record["event_id"])

    async def signal(
        self,
        execution_id: str,
        name: str,
        payload: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        event_id: str | None = None,
        ttl_seconds: float | None = None,
    ) -> str:
        """Send an event to one execution, by its id, for its step that waits for `name`
        (now, or within the event's time to live). The tenant is the execution's, read
        from its checkpoint when not given (an execution started a moment ago gets a few
        seconds to have one); pass it to signal an execution that may start later."""
        if tenant_id is None:
            tenant_id = await self._tenant_of(execution_id)
        record = event_sent(
            name,
            execution_id,
            payload,
            tenant_id,
            scope="execution",
            event_id=event_id,
            ttl_seconds=ttl_seconds,
        )
        await self._send_event(record)
        return str(record["event_id"])

    async def _tenant_of(self, execution_id: str, patience: float = 10.0) -> str:
        deadline = time.monotonic() + patience
        while True:
            stored = await read_checkpoint(self.settings, execution_id)
            if stored is not None:
                return str(stored["origin"]["tenant_id"])
            if time.monotonic() > deadline:
                raise EventNotSent(f"no execution {execution_id} in the engine: pass tenant_id")
            await asyncio.sleep(0.2)  # a start not applied yet: its checkpoint, read again

    async def _send_event(self, record: dict[str, Any]) -> None:
        """Sent and acknowledged (acks=all) before it returns: a producer may then forget
        it. The events topic is checked once per client, not per event."""
        if not self._events_topic_checked:
            await require_topics(kafka_access(self.settings), [self.names.events])
            self._events_topic_checked = True
        await self._producer.send_and_wait(
            self.names.events,
            CODEC.encode("EventSent", record),
            key=record["correlation_key"].encode(),
        )

    async def flush(self) -> None:
        await self._producer.flush()

    async def send_raw(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> None:
        """For operators and tests: put bytes on a topic as they are (to `partition`, or
        where the key's default partitioning puts them)."""
        await self._producer.send_and_wait(topic, value, key=key, partition=partition)

    async def replay(
        self,
        execution_id: str,
        action: ReplayAction,
        step_id: str | None = None,
        requested_by: str = "",
        reason: str = "",
        request_id: str | None = None,
    ) -> int:
        """Ask the coordinator to resume, retry or rerun an execution; returns the run
        the request opens, for `wait_for(..., run=)`. Raises ReplayRefused, with the
        reason, when the execution's checkpoint says the action does not apply. A
        `request_id` already applied sends nothing and returns that request's run."""
        stored = await read_checkpoint(self.settings, execution_id)
        if stored is None:
            retention = self.settings.retention_seconds
            raise ReplayRefused(
                f"no checkpoint for execution {execution_id}: it never started, or it ended"
                f" more than WORKFLOW_RETENTION_SECONDS ({retention} s) ago and its state"
                " has left the engine; a replay needs that state. Its history stays in"
                f" PostgreSQL (stepstream describe {execution_id}); start it anew instead"
            )
        state = state_from_dict(stored["state"])
        if request_id in state.replays:  # asked before, and applied: the same run again
            return state.replays.index(request_id) + 1
        if not replay_applies(state, action, step_id):
            steps = f" (its steps: {', '.join(state.steps)})" if step_id else ""
            raise ReplayRefused(
                f"{action} applies to {APPLIES_TO[action]}; execution {execution_id} "
                f"is {state.status}{steps}"
            )
        request_id = request_id or str(uuid.uuid4())
        record = {
            **stored["origin"],
            "event_id": event_id(execution_id, "replay", request_id),
            "timestamp": now_ms(),
            "request_id": request_id,
            "action": action.value,
            "step_id": step_id,
            "requested_by": requested_by,
            "reason": reason,
        }
        await self._producer.send(
            self.names.replay,
            CODEC.encode("ReplayRequested", record),
            key=execution_id.encode(),
        )
        return state.generation + 1

    async def cancel(
        self, execution_id: str, reason: str, requested_by: str = "", request_id: str | None = None
    ) -> int:
        """End an execution that has not ended as cancelled: nothing new starts. Returns
        the run whose outcome (`cancelled`) `wait_for(..., run=)` waits for. Raises
        ReplayRefused when it has ended already."""
        return await self.replay(
            execution_id,
            ReplayAction.CANCEL,
            requested_by=requested_by,
            reason=reason,
            request_id=request_id,
        )

    async def definition(self, workflow_id: str, version: int = 0) -> WorkflowDefinition | None:
        """The registered definition a start would run (version 0: the latest), from the
        definitions topic; None when there is none."""
        if self._catalog is None:
            self._catalog = DefinitionCatalog(kafka_access(self.settings), self.names.definitions)
            await self._catalog.start()
        return await self._catalog.lookup(workflow_id, version)

    async def database(self) -> asyncpg.Connection:
        """The client's PostgreSQL connection, made on first use, for what is recorded."""
        if self._database is None:
            self._database = await asyncpg.connect(self.settings.database_url)
        return self._database

    async def describe(self, execution_id: str) -> ExecutionRecord | None:
        """The execution as recorded in PostgreSQL (status, input, outputs, every step
        attempt with its timings, output and error); None when nothing is recorded."""
        return await describe_execution(await self.database(), execution_id)

    async def result(self, execution_id: str, timeout: float) -> ExecutionRecord:
        """How the execution ended, whether before this call or within `timeout` seconds
        (TimeoutError otherwise). The record comes from PostgreSQL; an outcome event seen
        meanwhile only wakes the wait early, since the persister writes a moment later."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    record = await self.describe(execution_id)
                    if record is not None and record.ended:
                        return record
                    if self._follow and execution_id not in self._outcomes:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._outcome(execution_id), 0.5)
                    else:
                        await asyncio.sleep(0.25)  # between polls of PostgreSQL
        except TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not end within {timeout:g}s"
            ) from None

    async def _outcome(self, execution_id: str) -> Outcome:
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append((None, waiter))
        return await waiter

    async def wait_for(self, execution_id: str, timeout: float, run: int = 0) -> Outcome:
        """The execution's outcome, or TimeoutError after `timeout` seconds. With `run`
        (from `replay`), the outcome of that run: its event ids are the coordinator's
        (`stepstream.agents.coordinator_events.run_of`)."""
        await self._producer.flush()
        ids = None
        if run:
            ids = {
                recipe(execution_id, kind, run)
                for kind in ("completed", "failed", "cancelled")
                for recipe in (event_id, legacy_event_id)  # outcomes of older workers too
            }
        for outcome in self._outcomes.get(execution_id, []):
            if ids is None or outcome.record["event_id"] in ids:
                return outcome
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append((ids, waiter))
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not end within {timeout:g}s"
            ) from None
