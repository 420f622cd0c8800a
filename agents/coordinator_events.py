"""What the coordinator reads and sends: Kafka records turned into the core's events,
and the core's commands turned into the records they send."""

from __future__ import annotations

from typing import Any

from stepstream.agents.child_events import core_child_ended
from stepstream.streams.events import envelope, from_json, now_ms, to_json
from stepstream.streams.partitioner import partition_index
from stepstream.streams.topics import TopicNames
from stepstream.workflows import (
    AttemptOutcome,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    EmitStepReady,
    EndAttempt,
    Event,
    EventArrived,
    ExecutionState,
    FailWorkflow,
    Heartbeat,
    OpenTask,
    RefuseEvent,
    Replay,
    ReplayAction,
    ScheduleRetry,
    ScheduleTimeout,
    SkipStep,
    Started,
    StepCompleted,
    StepFailed,
    Subscribe,
    TaskAnswered,
    Tick,
    Unsubscribe,
)
from stepstream.workflows.fan_out import parent_of

# An outgoing event: topic, key, schema name, record.
Outgoing = tuple[str, str, str, dict[str, Any]]


def source_codes(names: TopicNames) -> dict[str, str]:
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
                worker=record["worker"],
            )
        return StepCompleted(
            record["step_id"],
            record["attempt"],
            output,
            at_ms=record["finished_at"],
            started_at_ms=record["started_at"],
            worker=record["worker"],
        )
    if name == "StepFailed":
        return StepFailed(
            record["step_id"],
            record["attempt"],
            f"{record['error_type']}: {record['error_message']}",
            record["retryable"],
            at_ms=now_ms(),
            started_at_ms=record["started_at"],
            worker=record["worker"],
        )
    if name == "StepHeartbeat":
        return Heartbeat(record["step_id"], record["attempt"], at_ms=now_ms())
    if name == "StepRetryDue":
        return Tick(now_ms=max(record["timestamp"], now_ms()), step_id=record.get("step_id"))
    if name == "EventDelivered":
        return EventArrived(
            record["step_id"],
            record["attempt"],
            record["name"],
            record["sent_event_id"],
            from_json(record["payload_json"]),
            at_ms=now_ms(),
            scope=record["scope"],
            key=record["correlation_key"],
        )
    if name == "TaskAnswered":  # the coordinator's clock, as for a worker's failure
        return TaskAnswered(
            record["step_id"],
            record["attempt"],
            from_json(record["answer_json"]),
            record["answered_by"],
            at_ms=now_ms(),
        )
    if name == "ChildEnded":
        return core_child_ended(record)
    if name == "ReplayRequested":
        return Replay(
            record["request_id"],
            ReplayAction(record["action"]),
            at_ms=record["timestamp"],
            step_id=record["step_id"],
            reason=record["reason"],
        )
    raise ValueError(f"the coordinator does not take {name} events")


def misrouted(
    key: bytes,
    partition: int,
    partitions: int,
    fix: str = "publish reports keyed by execution_id with the default partitioner",
) -> str | None:
    """Why an event may not be applied where it was published: an execution's events and
    checkpoint live in its key's partition (a correlation's in its key's), and one
    published elsewhere (a producer with another partitioner) would be applied against
    state that partition does not own. `fix` tells the producer what to do."""
    expected = partition_index(key, partitions)
    if expected == partition:
        return None
    return (
        f"misrouted: key {key.decode(errors='replace')!r} belongs in partition {expected} by "
        f"Kafka's default partitioner (murmur2), not {partition}; {fix}"
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


def attempt_ended(state: ExecutionState, origin: dict[str, Any], end: EndAttempt) -> dict[str, Any]:
    """The StepAttemptEnded record of a decision. An outcome's id names the attempt, so
    the decision announced again after a redelivery is a duplicate; an ignored report's
    id also names the report's kind (a step's attempt may have an outcome and an ignored
    report of the other kind)."""
    parts: tuple[object, ...] = (end.step_id, end.attempt)
    kind = "attempt-ended"
    if end.outcome is AttemptOutcome.IGNORED:
        kind, parts = "report-ignored", (*parts, end.report or "")
    completed = end.outcome is AttemptOutcome.COMPLETED
    return envelope(
        kind,
        origin,
        *parts,
        step_id=end.step_id,
        step_type=state.definition.step(end.step_id).type
        if parent_of(end.step_id) in state.definition.step_by_id
        else "",
        attempt=end.attempt,
        outcome=str(end.outcome),
        will_retry=end.will_retry,
        output_json=to_json(end.output) if completed else None,
        error=end.error,
        report=end.report,
        started_at=end.started_at_ms,
        finished_at=end.finished_at_ms,
        worker=end.worker,
        released_at=end.released_at_ms,
    )


def run_of(state: ExecutionState) -> tuple[int, ...]:
    """Id parts that tell an outcome after an operator's replay from the first one (the
    first run's ids stay as they were)."""
    return (state.generation,) if state.generation else ()


def due_event(
    names: TopicNames, origin: dict[str, Any], command: ScheduleRetry | ScheduleTimeout
) -> Outgoing:
    """The StepRetryDue a retry or a queue step's timeout fires, at its due time, on the
    execution's partition: it brings the clock to where the checkpoint may be written."""
    kind = "retry-due" if isinstance(command, ScheduleRetry) else "timeout-due"
    step_id, attempt = command.step_id, command.attempt
    due = {**origin, "step_id": step_id, "attempt": attempt}
    record = envelope(kind, due, step_id, attempt, step_id=step_id, attempt=attempt)
    record["timestamp"] = command.due_at_ms
    return names.executions, origin["execution_id"], "StepRetryDue", record


def wait_changes(
    names: TopicNames, origin: dict[str, Any], command: Subscribe | Unsubscribe
) -> list[Outgoing]:
    """The EventWaitChanged records of a wait that begins or ends: one to the correlator
    of the execution's id (signals), one to that of its correlation key if it has one.
    Each is keyed by what it is addressed by, so it meets its events in one partition."""
    action = "begin" if isinstance(command, Subscribe) else "end"
    addresses = [("execution", origin["execution_id"])]
    if command.key is not None:
        addresses.append(("key", command.key))
    step_id, attempt = command.step_id, command.attempt
    return [
        (
            names.events,
            key,
            "EventWaitChanged",
            envelope(
                f"wait-{action}",
                origin,
                step_id,
                attempt,
                scope,
                key,
                action=action,
                name=command.event,
                correlation_key=key,
                scope=scope,
                step_id=step_id,
                attempt=attempt,
            ),
        )
        for scope, key in addresses
    ]


def refused(names: TopicNames, origin: dict[str, Any], command: RefuseEvent) -> Outgoing:
    """The EventRefused that takes a delivered event back to its correlator."""
    event = command.event
    record = envelope(
        "event-refused",
        origin,
        event.step_id,
        event.attempt,
        event.event_id,
        step_id=event.step_id,
        attempt=event.attempt,
        name=event.name,
        correlation_key=event.key,
        scope=event.scope,
        sent_event_id=event.event_id,
        reason=command.reason,
    )
    return names.events, event.key, "EventRefused", record


def task_opened(state: ExecutionState, origin: dict[str, Any], command: OpenTask) -> dict[str, Any]:
    """The HumanTaskOpened of a task: whose it is, its form, and when it times out. Its
    id names the attempt: the task announced again after a redelivery is a duplicate."""
    human = state.definition.step_by_id[command.step_id].human
    assert human is not None, "only a human step opens a task"
    return envelope(
        "task-opened",
        origin,
        command.step_id,
        command.attempt,
        step_id=command.step_id,
        attempt=command.attempt,
        assignee=command.assignee,
        title=human.title,
        form_json=to_json(human.form),
        due_at=command.due_at_ms,
    )


def command_event(
    names: TopicNames, state: ExecutionState, origin: dict[str, Any], command: Command
) -> Outgoing | None:
    """The record a command sends now; None for the timers (`due_event`)."""
    execution_id = state.execution_id
    started_at = state.started_at_ms
    match command:
        case EmitStepReady():
            queue = state.definition.step(command.step_id).queue
            topic = names.step_ready if queue is None else names.task_queue(queue)
            return topic, execution_id, "StepReady", step_ready(origin, command)
        case CompleteWorkflow():
            record = envelope(
                "completed",
                origin,
                *run_of(state),
                outputs_json=to_json(command.outputs),
                started_at=started_at or command.at_ms,
            )
            return names.workflow_completed, execution_id, "WorkflowCompleted", record
        case FailWorkflow():
            record = envelope(
                "failed",
                origin,
                *run_of(state),
                failed_step_id=command.step_id,
                error=command.error,
                started_at=started_at or command.at_ms,
            )
            return names.workflow_completed, execution_id, "WorkflowFailed", record
        case SkipStep():
            record = envelope(
                "step-skipped",
                origin,
                command.step_id,
                *run_of(state),
                step_id=command.step_id,
                step_type=state.definition.step_by_id[command.step_id].type,
                reason=command.reason,
            )
            return names.step_outcomes, execution_id, "StepSkipped", record
        case EndAttempt():
            ended = attempt_ended(state, origin, command)
            return names.step_outcomes, execution_id, "StepAttemptEnded", ended
        case CancelWorkflow():
            record = envelope(
                "cancelled",
                origin,
                *run_of(state),
                reason=command.reason,
                started_at=started_at or command.at_ms,
            )
            return names.workflow_completed, execution_id, "WorkflowCancelled", record
        case RefuseEvent():
            return refused(names, origin, command)
        case OpenTask():
            opened = task_opened(state, origin, command)
            return names.step_outcomes, execution_id, "HumanTaskOpened", opened
    return None
