"""The execution state machine: `reduce(state, event) -> (state, commands)`.

Pure and deterministic: the same events in the same order give the same state and the
same commands, which is what lets a coordinator rebuild an execution from its changelog.
Delivery is at-least-once, so every event that does not fit the state (a duplicate, a
stale attempt, anything after the end) changes nothing and emits nothing.
"""

from __future__ import annotations

from stepstream.workflows.draft import Draft, advance, fail, failed
from stepstream.workflows.messages import (
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    EmitStepReady,
    Event,
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
)
from stepstream.workflows.policies import backoff_ms
from stepstream.workflows.replay import apply_replay, replay_applies
from stepstream.workflows.state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    Failure,
    StepState,
    StepStatus,
    Transition,
    deadline,
    new_execution,
)

__all__ = [  # the messages are re-exported: they are part of the reducer's contract
    "TERMINAL",
    "CancelWorkflow",
    "Command",
    "CompleteWorkflow",
    "EmitStepReady",
    "Event",
    "ExecutionState",
    "ExecutionStatus",
    "FailWorkflow",
    "Failure",
    "Heartbeat",
    "Replay",
    "ReplayAction",
    "ScheduleRetry",
    "ScheduleTimeout",
    "SkipStep",
    "Started",
    "StepCompleted",
    "StepFailed",
    "StepState",
    "StepStatus",
    "Tick",
    "Transition",
    "new_execution",
    "reduce",
    "replay_applies",
]


def reduce(state: ExecutionState, event: Event) -> Transition:
    """Apply one event. Never raises for events that do not fit; they are no-ops."""
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
    raise TypeError(f"not an execution event: {event!r}")


def announce(state: ExecutionState) -> tuple[Command, ...]:
    """The commands the execution's current state stands on: the skips it announced,
    step-ready for every running step at its attempt, the retries it waits for, its
    outcome once it has one.

    A coordinator that redelivers an input whose effect is already in the checkpoint
    emits these again, because what it emitted the first time may never have been
    delivered (delivery rule 2). Their event ids are deterministic, so a consumer sees
    duplicates of what it may have seen, never new events."""
    skips = [
        SkipStep(step_id, step.error or "")
        for step_id, step in state.steps.items()
        if step.status is StepStatus.SKIPPED
    ]
    draft = Draft(state)
    if state.status is ExecutionStatus.COMPLETED:
        return (*skips, CompleteWorkflow(draft.outputs(), state.finished_at_ms or 0))
    if state.status is ExecutionStatus.FAILED and state.failure is not None:
        failure = state.failure
        return (*skips, FailWorkflow(failure.step_id, failure.error, state.finished_at_ms or 0))
    if state.status is ExecutionStatus.CANCELLED:
        return (CancelWorkflow(state.cancel_reason or "", state.finished_at_ms or 0),)
    if state.status is not ExecutionStatus.RUNNING:
        return ()
    draft.commands += skips
    for step_id in state.definition.graph.order:
        step = state.steps[step_id]
        if step.status is StepStatus.RUNNING:
            draft.send(step_id, step.attempt, step.ready_at_ms or 0)
        elif step.status is StepStatus.RETRYING and step.retry_at_ms is not None:
            draft.commands.append(ScheduleRetry(step_id, step.attempt + 1, step.retry_at_ms))
    return tuple(draft.commands)


def _is_current_attempt(state: ExecutionState, step_id: str, attempt: int) -> bool:
    step = state.steps.get(step_id)
    return step is not None and step.status is StepStatus.RUNNING and step.attempt == attempt


def _start(state: ExecutionState, event: Started) -> Transition:
    if state.status is not ExecutionStatus.PENDING:
        return state, ()
    draft = Draft(state)
    draft.settle([s for s in state.definition.graph.order if state.steps[s].remaining == 0])
    return advance(draft, event.at_ms, status=ExecutionStatus.RUNNING, started_at_ms=event.at_ms)


def _complete_step(state: ExecutionState, event: StepCompleted) -> Transition:
    if not _is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = Draft(state)
    draft.steps[event.step_id] = state.steps[event.step_id]._replace(
        status=StepStatus.COMPLETED,
        output=event.output,
        error=None,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
    )
    draft.outstanding -= 1
    draft.completed += 1
    draft.dependency_finished(event.step_id)
    return advance(draft, event.at_ms)


def _fail_step(state: ExecutionState, event: StepFailed) -> Transition:
    if not _is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = Draft(state)
    step = state.steps[event.step_id]
    policy = state.definition.retry_policy(event.step_id)
    run_attempt = event.attempt - step.base  # the policy counts attempts of this run
    retry = event.retryable and run_attempt < policy.max_attempts
    if retry and state.failure is None:  # a failing workflow starts nothing new
        delay = backoff_ms(policy, state.execution_id, event.step_id, run_attempt)
        due = event.at_ms + delay
        draft.steps[event.step_id] = step._replace(
            status=StepStatus.RETRYING, error=event.error, retry_at_ms=due
        )
        draft.commands.append(ScheduleRetry(event.step_id, event.attempt + 1, due))
        return draft.finish()
    draft.steps[event.step_id] = step._replace(
        status=StepStatus.FAILED,
        error=event.error,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
    )
    draft.outstanding -= 1
    if fail(draft, event.step_id, event.error):
        return failed(draft, event.at_ms)
    return advance(draft, event.at_ms)


def _heartbeat(state: ExecutionState, event: Heartbeat) -> Transition:
    """The current attempt of a queue step is alive: its deadline moves on, and a timer
    is armed for the new one (the old timer then finds nothing due)."""
    if not _is_current_attempt(state, event.step_id, event.attempt):
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
    policy applies), then the retries that are due are released."""
    commands: list[Command] = []
    for step_id in state.definition.graph.order:
        step = state.steps[step_id]
        due = deadline(state.definition, step_id, step)
        if step.status is StepStatus.RUNNING and due is not None and due <= event.now_ms:
            timeout = state.definition.timeout_ms(step_id)
            error = f"StepTimeout: no report or heartbeat within {timeout} ms"
            timed_out = StepFailed(step_id, step.attempt, error, True, at_ms=event.now_ms)
            state, emitted = _fail_step(state, timed_out)
            commands += emitted
            if state.status is not ExecutionStatus.RUNNING:
                return state, tuple(commands)
    state, released = _release_due_retries(state, event)
    return state, (*commands, *released)


def _release_due_retries(state: ExecutionState, event: Tick) -> Transition:
    if state.status is not ExecutionStatus.RUNNING:
        return state, ()
    due = [
        step_id
        for step_id in state.definition.graph.order
        if state.steps[step_id].status is StepStatus.RETRYING
        and (state.steps[step_id].retry_at_ms or 0) <= event.now_ms
    ]
    if not due:
        return state, ()
    draft = Draft(state)
    for step_id in due:
        draft.release(step_id, event.now_ms)
    return draft.finish()
