"""Coordinator: the single writer of each execution's state.

For each execution in a batch of events it loads the checkpoint, lets the core decide
(`stepstream.workflows.batch`: the reducer, and delivery rule 2's redelivery
bookkeeping), writes the checkpoint once, and emits the commands. It never waits on
PostgreSQL, Redis or a broker round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import EventT, StreamT

from stepstream.agents.checkpoints import Checkpoints, Loaded, UnknownExecution
from stepstream.agents.child_events import (
    child_cancel,
    child_start,
    outcome_to_parent,
)
from stepstream.agents.coordinator_events import (
    command_event,
    core_event,
    due_event,
    misrouted,
    source_codes,
    wait_changes,
)
from stepstream.agents.counting import count_attempt, count_commands
from stepstream.agents.retention import SWEEP_SECONDS, Retention
from stepstream.agents.timers import TIMER_SWEEP_SECONDS, TimerSweep
from stepstream.agents.watchdog import Watchdog
from stepstream.agents.watchdog import install as install_watchdog
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.changelog import Changelog
from stepstream.streams.engine import ConsumedMessage, Engine
from stepstream.streams.events import envelope
from stepstream.workflows import (
    CancelChild,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    EndAttempt,
    ExecutionState,
    FailWorkflow,
    ScheduleRetry,
    ScheduleTimeout,
    StartChild,
    Subscribe,
    Unsubscribe,
    announce,
)
from stepstream.workflows.batch import BatchDecision, Delivery, apply_batch

log = logging.getLogger(__name__)

Output = tuple[ConsumedMessage, ExecutionState, dict[str, Any], Command]
Letter = tuple[ConsumedMessage, Exception | str]


@dataclass
class Decided:
    """What one execution's events of a batch come to."""

    checkpoint: Loaded | None = None  # to write, when the events changed the state
    outputs: list[Output] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)  # starts of a taken id
    retention: list[dict[str, Any]] = field(default_factory=list)  # RetentionDue records


class Coordinator:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.names = engine.names
        self.table = engine.stream_tables().executions
        self.changelog = Changelog(engine.app, self.table)
        self.checkpoints = Checkpoints(self.table, self.changelog, engine.settings)
        self.watchdog = Watchdog(engine.settings.watchdog_margin_ms)
        self.retention = Retention(engine, self.checkpoints)
        self.timers = TimerSweep(engine, self.checkpoints)
        self.sources = source_codes(self.names)

    async def emit(self, state: ExecutionState, origin: dict[str, Any], command: Command) -> None:
        """Send what a command sends; a retry or a timeout is armed as a timer instead."""
        if isinstance(command, ScheduleRetry | ScheduleTimeout):
            self.engine.due.arm(command.due_at_ms, *due_event(self.names, origin, command))
            return
        if isinstance(command, Subscribe | Unsubscribe):
            for change in wait_changes(self.names, origin, command):
                await self.engine.send(*change)
            return
        if isinstance(command, StartChild):
            await self.engine.send(*child_start(self.names, state, origin, command))
            return
        if isinstance(command, CancelChild):
            await self.engine.send(*child_cancel(self.names, origin, command))
            return
        outgoing = command_event(self.names, state, origin, command)
        if outgoing is not None:
            await self.engine.send(*outgoing)
        if isinstance(command, CompleteWorkflow | FailWorkflow | CancelWorkflow):
            to_parent = outcome_to_parent(self.names, state, origin, command)
            if to_parent is not None:
                await self.engine.send(*to_parent)

    def decide(self, key: bytes, events: Sequence[EventT[Any]]) -> Decided:
        """Decode one execution's events, load its checkpoint and apply them. No I/O: what
        to write, emit and dead-letter is returned."""
        result = Decided()
        deliveries: list[Delivery] = []
        consumed: list[tuple[ConsumedMessage, str, dict[str, Any]]] = []
        current: Loaded | None = None
        for event in events:
            message = event.message
            try:
                decoded = CODEC.decode(event.value)
                if decoded.name in ("StepSkipped", "StepAttemptEnded"):
                    continue  # its own decisions: on step-outcomes now, here before 0.16
                if decoded.name == "RetentionDue":
                    result.retention.append(decoded.record)  # applied after the batch's events
                    continue
                if current is None:  # events before the execution exists are letters
                    current = self.checkpoints.load(key, decoded.name, decoded.record)
                core = core_event(decoded.name, decoded.record)
            except (EventCodecError, UnknownExecution, ValueError, KeyError) as error:
                result.letters.append((message, error))
                continue
            tenant = decoded.record["tenant_id"] if decoded.name == "WorkflowStarted" else None
            deliveries.append(Delivery(self.sources[message.topic], message.offset, core, tenant))
            consumed.append((message, decoded.name, decoded.record))
        if current is None:
            return result
        state, origin, applied = current
        decision = apply_batch(state, origin["tenant_id"], applied, deliveries)
        if decision.write:
            result.checkpoint = (decision.state, origin, decision.applied)
        result.outputs = [
            (consumed[e.cause][0], e.state, origin, e.command) for e in decision.emissions
        ]
        result.rejections = [consumed[i][2] for i in decision.foreign_starts]
        self.count(decision, key)
        return result

    def count(self, decision: BatchDecision, key: bytes) -> None:
        """Metrics for what changed (with a warning for each attempt that timed out,
        `agents.counting`) and a warning for each report that was ignored."""
        execution_id = key.decode()
        for change in decision.changes:
            count_commands(change.commands, change.before, change.after)
        for ignored in decision.ignored:
            end = cast(EndAttempt, ignored.command)
            count_attempt(end, ignored.state)
            self.engine.ignored_reports += 1
            log.warning(
                "ignored the %s report of %s/%s attempt %d: %s",
                *(end.report, execution_id, end.step_id, end.attempt, end.error),
                extra={"execution_id": execution_id, "step_id": end.step_id},
            )

    async def handle_batch(self, stream: StreamT[Any], events: Sequence[EventT[Any]]) -> None:
        """Each execution's events of the batch applied in order, its checkpoint written
        once; then the checkpoints' changelog records and every output handed to the
        producer. faust commits the batch's offsets only after its producer flush
        (faust_fixes 3): commit last."""
        by_key: dict[bytes, list[EventT[Any]]] = {}
        letters: list[Letter] = []
        partitions = self.engine.settings.topic_partitions
        for event in events:
            message = event.message
            if message.key is None:
                letters.append((message, "execution events must be keyed by execution_id"))
            elif wrong_partition := misrouted(message.key, message.partition, partitions):
                letters.append((message, wrong_partition))
            else:
                by_key.setdefault(message.key, []).append(event)
        outputs: list[Output] = []
        rejections: list[dict[str, Any]] = []
        retired: list[tuple[str, dict[str, Any]]] = []
        for key, group in by_key.items():
            partition = group[-1].message.partition
            # The store and the changelog take the partition from faust's current event.
            cast(faust.Stream[Any], stream)._set_current_event(group[-1])  # noqa: SLF001
            try:
                result = self.decide(key, group)
            except Exception as error:
                log.exception(
                    "coordinator failed on execution %r", key, extra={"execution_id": key.decode()}
                )
                letters += [(event.message, error) for event in group]
                continue
            if result.checkpoint is not None:
                self.checkpoints.write(key, partition, result.checkpoint)
                self.watchdog.track(key, result.checkpoint[0])
            letters += result.letters
            outputs += result.outputs
            rejections += result.rejections
            for record in result.retention:  # in the partition's context, set above
                retired += self.retention.apply(record, partition)
        await self.changelog.send()  # the batch's checkpoints, before what they emit
        await self.retention.tell_intake(retired)
        for letter, reason in letters:
            await self.engine.dead_letter(letter, reason)
        for record in rejections:
            await self.reject_taken_id(record)
        for cause, state, origin, command in outputs:
            try:
                await self.emit(state, origin, command)
            except Exception as failure:  # e.g. an outcome too large to send
                log.exception("coordinator could not emit %r", command)
                await self.engine.dead_letter(cause, failure)

    async def reject_taken_id(self, record: dict[str, Any]) -> None:
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
        await self.engine.send(
            self.names.workflow_rejected, record["execution_id"], "WorkflowRejected", rejected
        )

    def recover(self) -> None:
        """A worker that takes over partitions re-arms the timers their running
        executions hold and watches them: one walk of the running index, so the cost is
        what is in flight, never what ever ran."""
        executions = self.names.executions
        partitions = {tp.partition for tp in self.engine.assigned if tp.topic == executions}
        for key, state, origin in self.checkpoints.running(partitions):
            self.watchdog.track(key, state)
            for command in announce(state):
                if isinstance(command, ScheduleRetry | ScheduleTimeout):
                    self.engine.due.arm(command.due_at_ms, *due_event(self.names, origin, command))


def install(engine: Engine) -> Coordinator:
    """The faust wiring: the agent over the three input topics, the table's recovery,
    the revocation signal, the watchdog, the retention and timer sweeps."""
    coordinator = Coordinator(engine)
    names = engine.names
    install_watchdog(engine, coordinator.watchdog, coordinator.checkpoints, coordinator.emit)
    channel = engine.app.topic(
        names.executions,
        names.step_completed,
        names.replay,
        key_serializer="raw",
        value_serializer="raw",
    )

    @engine.app.agent(channel, name="coordinator")
    async def run(stream: StreamT[Any]) -> None:
        await engine.consume_batches(stream, coordinator.handle_batch)

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_partitions(sender: Any, *args: Any, **kwargs: Any) -> None:
        coordinator.checkpoints.forget_partitions()
        coordinator.timers.forget()

    @coordinator.table.on_recover
    async def rearm() -> None:
        coordinator.recover()

    @engine.app.timer(interval=SWEEP_SECONDS)  # type: ignore[untyped-decorator]
    async def sweep_retired() -> None:
        await coordinator.retention.sweep()

    @engine.app.timer(interval=TIMER_SWEEP_SECONDS)  # type: ignore[untyped-decorator]
    async def sweep_timers() -> None:
        coordinator.timers.sweep()

    return coordinator
