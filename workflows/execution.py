"""The execution state machine: `reduce(state, event) -> (state, commands)`.

Pure and deterministic: the same events in the same order give the same state and the
same commands, which is what lets a coordinator rebuild an execution from its changelog.
Delivery is at-least-once, so every event that does not fit the state (a duplicate, a
stale attempt, anything after the end) changes nothing and emits nothing.
"""

from __future__ import annotations

from stepstream.workflows.decisions import ended_attempt, ignored_report
from stepstream.workflows.definition import OnTimeout
from stepstream.workflows.draft import Draft, advance, fail, failed
from stepstream.workflows.durations import iso, written_duration
from stepstream.workflows.event_waits import ended_waits
from stepstream.workflows.fan_out import split_instance
from stepstream.workflows.fanning import instance_finished
from stepstream.workflows.held_reports import held_report
from stepstream.workflows.messages import (
    ArmTimer,
    AttemptOutcome,
    CancelChild,
    CancelWorkflow,
    ChildEnded,
    Command,
    CompleteWorkflow,
    EmitStepReady,
    EndAttempt,
    Event,
    EventArrived,
    FailWorkflow,
    Heartbeat,
    OpenTask,
    RefuseEvent,
    Replay,
    ReplayAction,
    ScheduleRetry,
    ScheduleTimeout,
    SkipStep,
    StartChild,
    Started,
    StepCompleted,
    StepFailed,
    Subscribe,
    TaskAnswered,
    Tick,
    Unsubscribe,
)
from stepstream.workflows.policies import backoff_ms
from stepstream.workflows.replay import apply_replay, children_to_cancel, replay_applies
from stepstream.workflows.state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    Failure,
    StepState,
    StepStatus,
    Transition,
    deadline,
    in_flight_order,
    is_current_attempt,
    new_execution,
)

__all__ = [  # the messages are re-exported: they are part of the reducer's contract
    "TERMINAL",
    "ArmTimer",
    "AttemptOutcome",
    "CancelChild",
    "CancelWorkflow",
    "ChildEnded",
    "Command",
    "CompleteWorkflow",
    "EmitStepReady",
    "EndAttempt",
    "Event",
    "EventArrived",
    "ExecutionState",
    "ExecutionStatus",
    "FailWorkflow",
    "Failure",
    "Heartbeat",
    "OpenTask",
    "RefuseEvent",
    "Replay",
    "ReplayAction",
    "ScheduleRetry",
    "ScheduleTimeout",
    "SkipStep",
    "StartChild",
    "Started",
    "StepCompleted",
    "StepFailed",
    "StepState",
    "StepStatus",
    "Subscribe",
    "TaskAnswered",
    "Tick",
    "Transition",
    "Unsubscribe",
    "ended_attempt",
    "ignored_report",
    "new_execution",
    "reduce",
    "replay_applies",
]


def reduce(state: ExecutionState, event: Event) -> Transition:
    """Apply one event. Never raises for events that do not fit; they are no-ops."""
    after, commands = _reduce(state, event)
    if after is not state and state.definition.has_event_waits:
        commands = (*commands, *ended_waits(state, after))
    return after, commands


def _reduce(state: ExecutionState, event: Event) -> Transition:
    if isinstance(event, Replay):
        return apply_replay(state, event)
    if state.status in TERMINAL:
        return state, ()
    match event:
        case Started():
            return _start(state, event)
        case StepCompleted():
            return _complete_step(state, event)
        case StepFailed():
            return _fail_step(state, event)
        case Heartbeat():
            return _heartbeat(state, event)
        case Tick():
            return _tick(state, event)
        case EventArrived() | TaskAnswered() | ChildEnded():
            report = held_report(state, event)
            if isinstance(report, StepCompleted):
                return _complete_step(state, report)
            return (state, ()) if report is None else _fail_step(state, report)
    raise TypeError(f"not an execution event: {event!r}")


def announce(state: ExecutionState) -> tuple[Command, ...]:
    """The commands the execution's current state stands on: the skips it announced,
    step-ready for every running step at its attempt, the retries it waits for, its
    outcome once it has one.

    A coordinator that redelivers an input whose effect is already in the checkpoint
    emits these again, because what it emitted the first time may never have been
    delivered (delivery rule 2). Their event ids are deterministic, so a consumer sees
    duplicates of what it may have seen, never new events."""
    ends = [
        end
        for step_id, step in state.steps.items()
        if (end := ended_attempt(state, step_id, step)) is not None
    ]
    skips = [
        SkipStep(step_id, step.error or "")
        for step_id, step in state.steps.items()
        if step.status is StepStatus.SKIPPED
    ]
    draft = Draft(state)
    finished_at = state.finished_at_ms or 0
    if state.status is ExecutionStatus.COMPLETED:
        return (*ends, *skips, CompleteWorkflow(draft.outputs(), finished_at))
    if state.status is ExecutionStatus.FAILED and state.failure is not None:
        failure = state.failure
        return (*ends, *skips, FailWorkflow(failure.step_id, failure.error, finished_at))
    if state.status is ExecutionStatus.CANCELLED:
        reason = state.cancel_reason or ""
        cancels = children_to_cancel(state, reason)
        return (*ends, *cancels, CancelWorkflow(reason, finished_at))
    if state.status is not ExecutionStatus.RUNNING:
        return ()
    draft.commands += [*ends, *skips]
    for step_id in in_flight_order(state.definition, state.steps):
        step = state.steps[step_id]
        if step.status is StepStatus.RUNNING:
            draft.send(step_id, step.attempt, step.ready_at_ms or 0)
        elif step.status is StepStatus.RETRYING and step.retry_at_ms is not None:
            draft.commands.append(ScheduleRetry(step_id, step.attempt + 1, step.retry_at_ms))
    return tuple(draft.commands)


def _start(state: ExecutionState, event: Started) -> Transition:
    if state.status is not ExecutionStatus.PENDING:
        return state, ()
    draft = Draft(state)
    draft.settle([s for s in state.definition.graph.order if state.steps[s].remaining == 0])
    return advance(draft, event.at_ms, status=ExecutionStatus.RUNNING, started_at_ms=event.at_ms)


def _complete_step(state: ExecutionState, event: StepCompleted) -> Transition:
    if not is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = Draft(state)
    draft.steps[event.step_id] = state.steps[event.step_id]._replace(
        status=StepStatus.COMPLETED,
        output=event.output,
        error=None,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
        worker=event.worker,
        timed_out=None,
    )
    draft.commands.append(
        EndAttempt(
            event.step_id,
            event.attempt,
            AttemptOutcome.COMPLETED,
            output=event.output,
            started_at_ms=event.started_at_ms,
            finished_at_ms=event.at_ms,
            worker=event.worker,
            released_at_ms=state.steps[event.step_id].ready_at_ms,
        )
    )
    draft.outstanding -= 1
    if split_instance(event.step_id) is not None:
        instance_finished(draft, event.step_id, event.at_ms)
    else:
        draft.completed += 1
        draft.dependency_finished(event.step_id)
    return advance(draft, event.at_ms)


def _fail_step(state: ExecutionState, event: StepFailed) -> Transition:
    if not is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = Draft(state)
    step = state.steps[event.step_id]
    policy = state.definition.retry_policy(event.step_id)
    run_attempt = event.attempt - step.base  # the policy counts attempts of this run
    retry = event.retryable and run_attempt < policy.max_attempts
    retry = retry and state.failure is None  # a failing workflow starts nothing new
    ended = step._replace(
        status=StepStatus.RETRYING if retry else StepStatus.FAILED,
        error=event.error,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
        worker=event.worker,
        timed_out=event.timed_out or None,
    )
    outcome = AttemptOutcome.TIMED_OUT if event.timed_out else AttemptOutcome.FAILED
    draft.commands.append(
        EndAttempt(
            event.step_id,
            event.attempt,
            outcome,
            error=event.error,
            will_retry=retry,
            started_at_ms=event.started_at_ms,
            finished_at_ms=event.at_ms,
            worker=event.worker,
            released_at_ms=step.ready_at_ms,
        )
    )
    if retry:
        delay = backoff_ms(policy, state.execution_id, event.step_id, run_attempt)
        due = event.at_ms + delay
        draft.steps[event.step_id] = ended._replace(retry_at_ms=due)
        draft.commands.append(ScheduleRetry(event.step_id, event.attempt + 1, due))
        return draft.finish()
    draft.steps[event.step_id] = ended
    draft.outstanding -= 1
    if split_instance(event.step_id) is not None:
        instance_finished(draft, event.step_id, event.at_ms)  # its failure policy decides
        return advance(draft, event.at_ms)
    if fail(draft, event.step_id, event.error):
        return failed(draft, event.at_ms)
    return advance(draft, event.at_ms)


def _heartbeat(state: ExecutionState, event: Heartbeat) -> Transition:
    """The current attempt of a queue step is alive: its deadline moves on, and a timer
    is armed for the new one (the old timer then finds nothing due)."""
    if not is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    step = state.steps[event.step_id]
    before = deadline(state.definition, event.step_id, step)
    alive = step._replace(alive_at_ms=max(event.at_ms, step.alive_at_ms or 0))
    after = deadline(state.definition, event.step_id, alive)
    if before is None or after is None or after <= before:
        return state, ()
    draft = Draft(state)
    draft.steps[event.step_id] = alive
    draft.commands.append(ScheduleTimeout(event.step_id, event.attempt, after))
    return draft.finish()


def _tick(state: ExecutionState, event: Tick) -> Transition:
    """The clock moved on: queue steps past their deadline fail as timed out (their retry
    policy applies), wait steps whose timer is due complete, then the retries that are
    due are released. Never early: a step is only decided once `now_ms` has passed."""
    commands: list[Command] = []
    for step_id in _ticked(state, event):
        step = state.steps[step_id]
        if step.fan is not None:
            continue  # a fan-out times out by its instances, never as a whole
        if step.due_at_ms is not None and step.status is StepStatus.RUNNING:
            if step.due_at_ms <= event.now_ms:
                state, emitted = _due(state, step_id, step, event.now_ms)
                commands += emitted
                if state.status is not ExecutionStatus.RUNNING:
                    return state, tuple(commands)
            continue
        due = deadline(state.definition, step_id, step)
        if step.status is StepStatus.RUNNING and due is not None and due <= event.now_ms:
            timeout = state.definition.timeout_ms(step_id)
            error = f"StepTimeout: no report or heartbeat within {timeout} ms"
            timed_out = StepFailed(
                step_id, step.attempt, error, True, at_ms=event.now_ms, timed_out=True
            )
            state, emitted = _fail_step(state, timed_out)
            commands += emitted
            if state.status is not ExecutionStatus.RUNNING:
                return state, tuple(commands)
    state, released = _release_due_retries(state, event)
    return state, (*commands, *released)


def _due(state: ExecutionState, step_id: str, step: StepState, now_ms: int) -> Transition:
    """A held step's timer is due: a wait step completes; a wait for an event or for an
    answer timed out, and its `onTimeout` says how it ends."""
    step_definition = state.definition.step(step_id)
    limit = step_definition.limit
    if limit is None:
        return _complete_step(state, fired(step_id, step, now_ms))
    waited = written_duration(limit.timeout_ms or 0)
    if step_definition.wait_for is not None:
        error = f"EventTimeout: no {step_definition.wait_for.event!r} event within {waited}"
    else:
        error = f"TaskTimeout: no answer within {waited}"
    if limit.on_timeout is OnTimeout.FAIL:
        ended = StepFailed(
            step_id, step.attempt, error, False, now_ms, step.ready_at_ms, timed_out=True
        )
        return _fail_step(state, ended)
    if limit.on_timeout is OnTimeout.CONTINUE:
        output = {**fired(step_id, step, now_ms).output, "timed_out": True}
        return _complete_step(
            state, StepCompleted(step_id, step.attempt, output, now_ms, step.ready_at_ms)
        )
    draft = Draft(state)
    draft.outstanding -= 1
    draft.skip(step_id, error)
    return advance(draft, now_ms)


def fired(step_id: str, step: StepState, now_ms: int) -> StepCompleted:
    """A wait step's timer fired: its output says when it was due and when it fired."""
    due = step.due_at_ms or now_ms
    output = {"due_at": iso(due), "fired_at": iso(now_ms), "due_at_ms": due, "fired_at_ms": now_ms}
    return StepCompleted(step_id, step.attempt, output, now_ms, started_at_ms=step.ready_at_ms)


def _ticked(state: ExecutionState, event: Tick) -> list[str]:
    """The steps a tick looks at: the definition's, and the fan-out instance whose due
    event it is (each instance's retry and timeout has one, so a fan-out of 10,000 is
    not scanned per tick)."""
    order = list(state.definition.graph.order)
    if event.step_id is not None and split_instance(event.step_id) is not None:
        if event.step_id in state.steps:
            order.append(event.step_id)
    return order


def _release_due_retries(state: ExecutionState, event: Tick) -> Transition:
    if state.status is not ExecutionStatus.RUNNING:
        return state, ()
    due = [
        step_id
        for step_id in _ticked(state, event)
        if state.steps[step_id].status is StepStatus.RETRYING
        and (state.steps[step_id].retry_at_ms or 0) <= event.now_ms
    ]
    if not due:
        return state, ()
    draft = Draft(state)
    for step_id in due:
        draft.release(step_id, event.now_ms)
    return draft.finish()
