"""Coordinator: the single writer of each execution's state.

For every event of an execution it loads the checkpoint, applies the core's reducer,
writes the checkpoint once, and emits the commands. It never waits on PostgreSQL, Redis
or a broker round trip.

The checkpoint remembers the offset of the last event of each input topic it applied
(`applied`). An event at or below that offset is a redelivery after a crash or a
rebalance: its state change is already in the checkpoint, but what it emitted may never
have been delivered, so the execution's outstanding commands are emitted again, with
the same event ids (delivery rule 2).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from stepstream.agents.checkpoints import Checkpoints, Loaded, UnknownExecution
from stepstream.agents.counting import count_commands, count_report
from stepstream.agents.retention import install as install_retention
from stepstream.agents.watchdog import install as install_watchdog
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.changelog import Changelog
from stepstream.streams.engine import ConsumedMessage, Engine
from stepstream.streams.events import envelope, from_json, now_ms, to_json
from stepstream.streams.partitioner import partition_index
from stepstream.workflows import (
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    EmitStepReady,
    Event,
    ExecutionState,
    FailWorkflow,
    Heartbeat,
    Replay,
    ReplayAction,
    ScheduleRetry,
    ScheduleTimeout,
    SkipStep,
    Started,
    StepCompleted,
    StepFailed,
    Tick,
    announce,
    reduce,
)

log = logging.getLogger(__name__)


Output = tuple[ConsumedMessage, ExecutionState, dict[str, Any], Command]


@dataclass
class Applied:
    """What one execution's events of a batch come to."""

    checkpoint: Loaded | None = None  # to write, when the events changed the state
    outputs: list[Output] = field(default_factory=list)
    letters: list[tuple[ConsumedMessage, Exception | str]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    # Reports of attempts not current: (execution id, step id, attempt, current attempt).
    superseded: list[tuple[str, str, int, int]] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)  # RetentionDue records


def source_codes(names: Any) -> dict[str, str]:
    """Short names of the coordinator's input topics, as the checkpoint's `applied` keys."""
    return {names.executions: "x", names.step_completed: "c", names.replay: "r"}


def core_event(name: str, record: dict[str, Any]) -> Event:
    """Translate a decoded Kafka event into the reducer's event. A worker's failure and
    heartbeat take the coordinator's clock, not the worker's `finished_at` or
    `timestamp`: retries and deadlines count from them, and a worker's clock may be
    wrong."""
    if name == "WorkflowStarted":
        return Started(at_ms=record["timestamp"])
    if name == "StepCompleted":
        try:
            output = from_json(record["output_json"])
        except ValueError as error:  # the worker's bug: fail the attempt, for good, and say why
            return StepFailed(
                record["step_id"],
                record["attempt"],
                f"InvalidOutput: output_json is not JSON ({error})",
                retryable=False,
                at_ms=now_ms(),
                started_at_ms=record["started_at"],
            )
        return StepCompleted(
            record["step_id"],
            record["attempt"],
            output,
            at_ms=record["finished_at"],
            started_at_ms=record["started_at"],
        )
    if name == "StepFailed":
        return StepFailed(
            record["step_id"],
            record["attempt"],
            f"{record['error_type']}: {record['error_message']}",
            record["retryable"],
            at_ms=now_ms(),
            started_at_ms=record["started_at"],
        )
    if name == "StepHeartbeat":
        return Heartbeat(record["step_id"], record["attempt"], at_ms=now_ms())
    if name == "StepRetryDue":
        return Tick(now_ms=max(record["timestamp"], now_ms()))
    if name == "ReplayRequested":
        return Replay(
            record["request_id"],
            ReplayAction(record["action"]),
            at_ms=record["timestamp"],
            step_id=record["step_id"],
            reason=record["reason"],
        )
    raise ValueError(f"the coordinator does not take {name} events")


def misrouted(key: bytes, partition: int, partitions: int) -> str | None:
    """Why an event may not be applied where it was published: an execution's events and
    checkpoint live in its key's partition, and one published elsewhere (a producer with
    another partitioner) would be applied against a checkpoint that partition does not
    own."""
    expected = partition_index(key, partitions)
    if expected == partition:
        return None
    return (
        f"misrouted: key {key.decode(errors='replace')!r} belongs in partition {expected} by "
        f"Kafka's default partitioner (murmur2), not {partition}; publish reports keyed by "
        "execution_id with the default partitioner"
    )


def step_ready(origin: dict[str, Any], command: EmitStepReady) -> dict[str, Any]:
    """The StepReady record for a command; its idempotency key is what handlers with side
    effects key them on."""
    execution_id = origin["execution_id"]
    return envelope(
        "ready",
        origin,
        command.step_id,
        command.attempt,
        step_id=command.step_id,
        step_type=command.step_type,
        attempt=command.attempt,
        idempotency_key=f"{execution_id}/{command.step_id}/{command.attempt}",
        inputs_json=to_json(command.inputs),
        config_json=to_json(command.config),
        timeout_ms=command.timeout_ms,
    )


def run_of(state: ExecutionState) -> tuple[int, ...]:
    """Id parts that tell an outcome after an operator's replay from the first one (the
    first run's ids stay as they were)."""
    return (state.generation,) if state.generation else ()


def install(engine: Engine) -> None:
    names = engine.names
    table = engine.stream_tables().executions
    changelog = Changelog(engine.app, table)
    checkpoints = Checkpoints(table, changelog, engine.settings)
    # Retries and queue steps' timeouts, by wall clock: (due_ms, sequence, execution_id,
    # kind, origin). The sequence breaks ties (steps released together fall due together),
    # so the heap never compares two origins.
    timers: list[tuple[int, int, str, str, dict[str, Any]]] = []
    sequence = itertools.count()
    sources = source_codes(names)

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        checkpoints.forget_partitions()

    async def emit(state: ExecutionState, origin: dict[str, Any], command: object) -> None:
        execution_id = state.execution_id
        match command:
            case EmitStepReady():
                record = step_ready(origin, command)
                queue = state.definition.step_by_id[command.step_id].queue
                topic = names.step_ready if queue is None else names.task_queue(queue)
                await engine.send(topic, execution_id, "StepReady", record)
            case CompleteWorkflow():
                record = envelope(
                    "completed",
                    origin,
                    *run_of(state),
                    outputs_json=to_json(command.outputs),
                    started_at=state.started_at_ms or command.at_ms,
                )
                await engine.send(
                    names.workflow_completed, execution_id, "WorkflowCompleted", record
                )
            case FailWorkflow():
                record = envelope(
                    "failed",
                    origin,
                    *run_of(state),
                    failed_step_id=command.step_id,
                    error=command.error,
                    started_at=state.started_at_ms or command.at_ms,
                )
                await engine.send(names.workflow_completed, execution_id, "WorkflowFailed", record)
            case SkipStep():
                step_type = state.definition.step_by_id[command.step_id].type
                record = envelope(
                    "step-skipped",
                    origin,
                    command.step_id,
                    *run_of(state),
                    step_id=command.step_id,
                    step_type=step_type,
                    reason=command.reason,
                )
                await engine.send(names.step_completed, execution_id, "StepSkipped", record)
            case CancelWorkflow():
                record = envelope(
                    "cancelled",
                    origin,
                    *run_of(state),
                    reason=command.reason,
                    started_at=state.started_at_ms or command.at_ms,
                )
                await engine.send(
                    names.workflow_completed, execution_id, "WorkflowCancelled", record
                )
            case ScheduleRetry() | ScheduleTimeout():
                kind = "retry-due" if isinstance(command, ScheduleRetry) else "timeout-due"
                due = {**origin, "step_id": command.step_id, "attempt": command.attempt}
                timer = (command.due_at_ms, next(sequence), execution_id, kind, due)
                heapq.heappush(timers, timer)

    async def reject_taken_id(record: dict[str, Any]) -> None:
        """Another tenant's execution has this id: the start is refused, never merged."""
        rejected = envelope(
            "rejected",
            record,
            "duplicate_execution_id",
            record["tenant_id"],
            code="duplicate_execution_id",
            reason=f"execution id {record['execution_id']!r} is taken by another execution",
            limit=None,
            reset_at=None,
        )
        await engine.send(
            names.workflow_rejected, record["execution_id"], "WorkflowRejected", rejected
        )

    def apply_events(key: bytes, events: Sequence[EventT[Any]]) -> Applied:
        """Apply one execution's events of a batch to its checkpoint, in order. No I/O:
        what to write, emit and dead-letter is returned."""
        result = Applied()
        current = None
        for event in events:
            message = event.message
            try:
                decoded = CODEC.decode(event.value)
                if decoded.name == "StepSkipped":
                    continue  # its own announcement, for downstream consumers
                if decoded.name == "RetentionDue":
                    result.retention.append(decoded.record)  # applied after the batch's events
                    continue
                if current is None:
                    current = checkpoints.load(key, decoded.name, decoded.record)
                core = core_event(decoded.name, decoded.record)
            except (EventCodecError, UnknownExecution, ValueError, KeyError) as error:
                result.letters.append((message, error))
                continue
            state, origin, applied = current
            if applied is not None and decoded.name == "WorkflowStarted":
                if decoded.record["tenant_id"] != origin["tenant_id"]:
                    result.rejections.append(decoded.record)
                    continue
            source = sources[message.topic]
            if applied is not None and message.offset <= applied.get(source, -1):
                if message.offset == applied[source]:  # once per execution and input topic
                    result.outputs += [(message, state, origin, c) for c in announce(state)]
                continue
            new_state, commands = reduce(state, core)
            if new_state is not state:
                if decoded.name in ("StepCompleted", "StepFailed"):
                    count_report(decoded.name, decoded.record, state)
                count_commands(commands, new_state)
            if new_state is state and applied is not None:
                if isinstance(core, StepCompleted | StepFailed):
                    current_attempt = state.steps[core.step_id].attempt
                    if core.attempt != current_attempt:
                        result.superseded.append(
                            (key.decode(), core.step_id, core.attempt, current_attempt)
                        )
                continue  # a duplicate or stale event: nothing to write, nothing to emit
            current = (new_state, origin, {**(applied or {}), source: message.offset})
            result.checkpoint = current
            result.outputs += [(message, new_state, origin, c) for c in commands]
        return result

    async def handle_batch(stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
        """Each execution's events of the batch applied in order, its checkpoint written
        once; then the checkpoints' changelog records and every output handed to the
        producer. faust commits the batch's offsets only after its producer flush
        (faust_fixes 3): commit last."""
        by_key: dict[bytes, list[EventT[Any]]] = {}
        letters: list[tuple[ConsumedMessage, Exception | str]] = []
        partitions = engine.settings.topic_partitions
        for event in events:
            consumed = event.message
            if consumed.key is None:
                letters.append((consumed, "execution events must be keyed by execution_id"))
            elif wrong_partition := misrouted(consumed.key, consumed.partition, partitions):
                letters.append((consumed, wrong_partition))
            else:
                by_key.setdefault(consumed.key, []).append(event)
        outputs: list[Output] = []
        rejections: list[dict[str, Any]] = []
        retired: list[tuple[str, dict[str, Any]]] = []
        for key, group in by_key.items():
            # The store and the changelog take the partition from faust's current event.
            cast(faust.Stream[Any], stream)._set_current_event(group[-1])  # noqa: SLF001
            try:
                result = apply_events(key, group)
            except Exception as error:
                log.exception(
                    "coordinator failed on execution %r", key, extra={"execution_id": key.decode()}
                )
                letters += [(event.message, error) for event in group]
                continue
            if result.checkpoint is not None:
                checkpoints.write(key, group[-1].message.partition, result.checkpoint)
                watchdog.track(key, result.checkpoint[0])
            letters += result.letters
            outputs += result.outputs
            rejections += result.rejections
            for record in result.retention:  # in the partition's context, set above
                retired += retention.apply(record, group[-1].message.partition)
            for execution_id, step_id, attempt, current in result.superseded:
                engine.superseded_reports += 1  # a late report: the attempt was superseded
                log.warning(
                    "ignored the report of %s/%s attempt %d (current %d): not the current attempt",
                    *(execution_id, step_id, attempt, current),
                    extra={"execution_id": execution_id, "step_id": step_id, "attempt": attempt},
                )
        await changelog.send()  # the batch's checkpoints, before what they emit
        await retention.tell_intake(retired)
        for message, reason in letters:
            await engine.dead_letter(message, reason)
        for record in rejections:
            await reject_taken_id(record)
        for message, state, origin, command in outputs:
            try:
                await emit(state, origin, command)
            except Exception as failure:  # e.g. an outcome too large to send
                log.exception("coordinator could not emit %r", command)
                await engine.dead_letter(message, failure)

    watchdog = install_watchdog(engine, table, checkpoints, emit)
    retention = install_retention(engine, checkpoints)

    channel = engine.app.topic(
        names.executions,
        names.step_completed,
        names.replay,
        key_serializer="raw",
        value_serializer="raw",
    )

    @engine.app.agent(channel, name="coordinator")
    async def coordinator(stream: StreamT[Any]) -> None:
        await engine.consume_batches(stream, handle_batch)

    @engine.app.timer(interval=0.2)  # type: ignore[untyped-decorator]
    async def fire_due_timers() -> None:
        """Retries and timeouts are due by wall clock; a StepRetryDue event brings the clock
        into the execution's partition, where the coordinator may write its checkpoint."""
        now = now_ms()
        while timers and timers[0][0] <= now:
            due, _, execution_id, kind, origin = heapq.heappop(timers)
            step_id, attempt = origin["step_id"], origin["attempt"]
            record = envelope(kind, origin, step_id, attempt, step_id=step_id, attempt=attempt)
            record["timestamp"] = due
            await engine.send(names.executions, execution_id, "StepRetryDue", record)

    @table.on_recover
    async def rearm_timers() -> None:
        """A worker that takes over partitions re-arms the timers their running
        executions hold (from the running index: the cost of what is in flight)."""
        partitions = {tp.partition for tp in engine.assigned if tp.topic == names.executions}
        for key, state, origin in checkpoints.running(partitions):
            for command in announce(state):
                if isinstance(command, ScheduleRetry | ScheduleTimeout):
                    due = {**origin, "step_id": command.step_id, "attempt": command.attempt}
                    kind = "retry-due" if isinstance(command, ScheduleRetry) else "timeout-due"
                    timer = (command.due_at_ms, next(sequence), key.decode(), kind, due)
                    heapq.heappush(timers, timer)
