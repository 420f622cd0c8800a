"""The execution state machine: `reduce(state, event) -> (state, commands)`.

Pure and deterministic: the same events in the same order give the same state and the
same commands, which is what lets a coordinator rebuild an execution from its changelog.
Delivery is at-least-once, so every event that does not fit the state (a duplicate, a
stale attempt, anything after the end) changes nothing and emits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.messages import (
    Command,
    CompleteWorkflow,
    EmitStepReady,
    Event,
    FailWorkflow,
    Replay,
    ReplayAction,
    ScheduleRetry,
    ScheduleTimeout,
    Started,
    StepCompleted,
    StepFailed,
    Tick,
)
from stepstream.workflows.policies import backoff_ms

__all__ = [  # the messages are re-exported: they are part of the reducer's contract
    "TERMINAL",
    "Command",
    "CompleteWorkflow",
    "EmitStepReady",
    "Event",
    "ExecutionState",
    "ExecutionStatus",
    "FailWorkflow",
    "Failure",
    "Replay",
    "ReplayAction",
    "ScheduleRetry",
    "ScheduleTimeout",
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


class StepStatus(StrEnum):
    WAITING = "waiting"  # some dependency has not completed
    QUEUED = "queued"  # dependencies done, waiting for a free slot
    RUNNING = "running"  # step-ready emitted for the current attempt
    RETRYING = "retrying"  # failed, next attempt scheduled; keeps its slot
    COMPLETED = "completed"
    FAILED = "failed"


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED})


class StepState(NamedTuple):
    """One step's part of the checkpoint. A NamedTuple: `_replace` is the reducer's
    most frequent operation, and it is several times cheaper than on a dataclass."""

    status: StepStatus
    remaining: int  # dependencies not yet completed (the in-degree counter)
    attempt: int = 0  # 1-based number of the current or last attempt; 0 = never ran
    output: Any = None
    error: str | None = None
    retry_at_ms: int | None = None
    ready_at_ms: int | None = None  # when the current attempt was released
    started_at_ms: int | None = None  # as reported by the executor
    finished_at_ms: int | None = None
    base: int = 0  # attempts made before the current run (an operator's retry or rerun)


@dataclass(frozen=True, slots=True)
class Failure:
    step_id: str
    error: str


@dataclass(frozen=True, slots=True)
class ExecutionState:
    execution_id: str
    definition: WorkflowDefinition
    input: Mapping[str, Any]
    max_outstanding: int
    steps: Mapping[str, StepState]
    status: ExecutionStatus = ExecutionStatus.PENDING
    queue: tuple[str, ...] = ()  # queued steps, in plan order
    outstanding: int = 0  # running + retrying steps
    completed_steps: int = 0
    failure: Failure | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    replays: tuple[str, ...] = ()  # operator requests applied, oldest first

    @property
    def generation(self) -> int:
        """How many times an operator re-opened the execution; outcome ids include it."""
        return len(self.replays)


Transition = tuple[ExecutionState, tuple[Command, ...]]


def new_execution(
    execution_id: str,
    definition: WorkflowDefinition,
    workflow_input: Mapping[str, Any],
    *,
    max_parallel_steps: int,
    parallel_enabled: bool = True,
) -> ExecutionState:
    """A pending execution; the `Started` event releases its first steps."""
    if max_parallel_steps < 1:
        raise ValueError("max_parallel_steps must be at least 1")
    steps = {
        step.id: StepState(StepStatus.WAITING, remaining=len(step.depends_on))
        for step in definition.steps
    }
    return ExecutionState(
        execution_id=execution_id,
        definition=definition,
        input=workflow_input,
        max_outstanding=max_parallel_steps if parallel_enabled else 1,
        steps=steps,
    )


def reduce(state: ExecutionState, event: Event) -> Transition:
    """Apply one event. Never raises for events that do not fit; they are no-ops."""
    if isinstance(event, Replay):
        return _replay(state, event)
    if state.status in TERMINAL:
        return state, ()
    match event:
        case Started():
            return _start(state, event)
        case StepCompleted():
            return _complete_step(state, event)
        case StepFailed():
            return _fail_step(state, event)
        case Tick():
            return _tick(state, event)
    raise TypeError(f"not an execution event: {event!r}")


def announce(state: ExecutionState) -> tuple[Command, ...]:
    """The commands the execution's current state stands on: step-ready for every running
    step at its attempt, the retries it waits for, its outcome once it has one.

    A coordinator that redelivers an input whose effect is already in the checkpoint
    emits these again, because what it emitted the first time may never have been
    delivered (delivery rule 2). Their event ids are deterministic, so a consumer sees
    duplicates of what it may have seen, never new events."""
    if state.status is ExecutionStatus.COMPLETED:
        outputs = {s: state.steps[s].output for s in state.definition.graph.order}
        return (CompleteWorkflow(outputs, state.finished_at_ms or 0),)
    if state.status is ExecutionStatus.FAILED and state.failure is not None:
        failure = state.failure
        return (FailWorkflow(failure.step_id, failure.error, state.finished_at_ms or 0),)
    if state.status is not ExecutionStatus.RUNNING:
        return ()
    draft = _Draft(state)
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
    draft = _Draft(state)
    draft.enqueue([s for s in state.definition.graph.order if state.steps[s].remaining == 0])
    draft.fill_slots(event.at_ms)
    return draft.finish(status=ExecutionStatus.RUNNING, started_at_ms=event.at_ms)


def _complete_step(state: ExecutionState, event: StepCompleted) -> Transition:
    if not _is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = _Draft(state)
    draft.steps[event.step_id] = state.steps[event.step_id]._replace(
        status=StepStatus.COMPLETED,
        output=event.output,
        error=None,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
    )
    draft.outstanding -= 1
    released = []
    for dependent in state.definition.graph.dependents[event.step_id]:
        step = draft.steps[dependent]
        draft.steps[dependent] = step._replace(remaining=step.remaining - 1)
        if step.remaining == 1:
            released.append(dependent)
    draft.enqueue(released)
    completed = state.completed_steps + 1
    if completed == len(state.steps):
        outputs = {step_id: draft.steps[step_id].output for step_id in state.definition.graph.order}
        draft.commands.append(CompleteWorkflow(outputs, event.at_ms))
        return draft.finish(
            status=ExecutionStatus.COMPLETED, completed_steps=completed, finished_at_ms=event.at_ms
        )
    draft.fill_slots(event.at_ms)
    return draft.finish(completed_steps=completed)


def _fail_step(state: ExecutionState, event: StepFailed) -> Transition:
    if not _is_current_attempt(state, event.step_id, event.attempt):
        return state, ()
    draft = _Draft(state)
    step = state.steps[event.step_id]
    policy = state.definition.retry_policy(event.step_id)
    run_attempt = event.attempt - step.base  # the policy counts attempts of this run
    if event.retryable and run_attempt < policy.max_attempts:
        delay = backoff_ms(policy, state.execution_id, event.step_id, run_attempt)
        due = event.at_ms + delay
        draft.steps[event.step_id] = step._replace(
            status=StepStatus.RETRYING, error=event.error, retry_at_ms=due
        )
        draft.commands.append(ScheduleRetry(event.step_id, event.attempt + 1, due))
        return draft.finish()
    # Fail fast: steps already running may finish, but nothing new starts.
    draft.steps[event.step_id] = step._replace(
        status=StepStatus.FAILED,
        error=event.error,
        started_at_ms=event.started_at_ms,
        finished_at_ms=event.at_ms,
    )
    draft.outstanding -= 1
    draft.queue.clear()
    draft.commands.append(FailWorkflow(event.step_id, event.error, event.at_ms))
    return draft.finish(
        status=ExecutionStatus.FAILED,
        failure=Failure(event.step_id, event.error),
        finished_at_ms=event.at_ms,
    )


def _tick(state: ExecutionState, event: Tick) -> Transition:
    """The clock moved on: queue steps past their deadline fail as timed out (their retry
    policy applies), then the retries that are due are released."""
    commands: list[Command] = []
    for step_id in state.definition.graph.order:
        step = state.steps[step_id]
        deadline = _deadline(state, step_id)
        if step.status is StepStatus.RUNNING and deadline is not None and deadline <= event.now_ms:
            timeout = state.definition.timeout_ms(step_id)
            error = f"StepTimeout: no report within {timeout} ms"
            timed_out = StepFailed(step_id, step.attempt, error, True, at_ms=event.now_ms)
            state, emitted = _fail_step(state, timed_out)
            commands += emitted
            if state.status is not ExecutionStatus.RUNNING:
                return state, tuple(commands)
    state, released = _release_due_retries(state, event)
    return state, (*commands, *released)


def _deadline(state: ExecutionState, step_id: str) -> int | None:
    """When a queue step's current attempt times out; None for the built-in executor's
    steps (it enforces their timeouts itself, from when it starts them)."""
    ready_at = state.steps[step_id].ready_at_ms
    if state.definition.step_by_id[step_id].queue is None or ready_at is None:
        return None
    return ready_at + state.definition.timeout_ms(step_id)


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
    draft = _Draft(state)
    for step_id in due:
        draft.release(step_id, event.now_ms)
    return draft.finish()


def replay_applies(state: ExecutionState, action: ReplayAction, step_id: str | None) -> bool:
    """Whether the request would change the execution: resume a running one, retry a
    failed one, rerun an ended one from one of its steps."""
    match action:
        case ReplayAction.RESUME:
            return state.status is ExecutionStatus.RUNNING
        case ReplayAction.RETRY:
            return state.status is ExecutionStatus.FAILED
        case ReplayAction.RERUN_FROM:
            return state.status in TERMINAL and step_id in state.steps
    return False


def _replay(state: ExecutionState, event: Replay) -> Transition:
    if event.request_id in state.replays or not replay_applies(state, event.action, event.step_id):
        return state, ()
    reset: tuple[str, ...] = ()
    if event.action is ReplayAction.RERUN_FROM and event.step_id is not None:
        reset = (event.step_id, *state.definition.graph.descendants(event.step_id))
    return _reopen(state, reset, event)


def _reopen(state: ExecutionState, reset: tuple[str, ...], event: Replay) -> Transition:
    """Run again what has not completed: the `reset` steps from scratch, failed steps
    with a new attempt, running steps re-sent at their attempt (handlers key their side
    effects on it), retries now; then the queue as dependencies and slots allow."""
    draft = _Draft(state)
    for step_id in reset:
        attempt = draft.steps[step_id].attempt
        draft.steps[step_id] = StepState(StepStatus.WAITING, 0, attempt=attempt, base=attempt)
    graph = state.definition.graph
    done = {s for s, step in draft.steps.items() if step.status is StepStatus.COMPLETED}
    draft.queue, draft.outstanding = [], 0
    for step_id in graph.order:
        step = draft.steps[step_id]
        if step.status is StepStatus.COMPLETED:
            continue
        if step.status is StepStatus.RUNNING:
            draft.outstanding += 1
            draft.send(step_id, step.attempt, event.at_ms)
        elif step.status is StepStatus.RETRYING:
            draft.outstanding += 1
            draft.release(step_id, event.at_ms)
        else:  # waiting, queued, or failed: queued again once its dependencies are done
            remaining = sum(d not in done for d in state.definition.step_by_id[step_id].depends_on)
            base = step.attempt if step.status is StepStatus.FAILED else step.base
            status = StepStatus.QUEUED if remaining == 0 else StepStatus.WAITING
            draft.steps[step_id] = step._replace(
                status=status, remaining=remaining, error=None, base=base
            )
            if remaining == 0:
                draft.queue.append(step_id)
    draft.fill_slots(event.at_ms)
    return draft.finish(
        status=ExecutionStatus.RUNNING,
        completed_steps=len(done),
        failure=None,
        finished_at_ms=None,
        replays=(*state.replays, event.request_id),
    )


class _Draft:
    """Mutable working copy of one transition; `finish` freezes it into the next state."""

    def __init__(self, state: ExecutionState) -> None:
        self.state = state
        self.steps = dict(state.steps)
        self.queue = list(state.queue)
        self.outstanding = state.outstanding
        self.commands: list[Command] = []

    def enqueue(self, step_ids: list[str]) -> None:
        for step_id in step_ids:
            self.steps[step_id] = self.steps[step_id]._replace(status=StepStatus.QUEUED)
        if step_ids:
            position = self.state.definition.graph.position
            self.queue = sorted([*self.queue, *step_ids], key=position.__getitem__)

    def fill_slots(self, at_ms: int) -> None:
        free = self.state.max_outstanding - self.outstanding
        if free <= 0 or not self.queue:
            return
        taken, self.queue = self.queue[:free], self.queue[free:]
        self.outstanding += len(taken)
        for step_id in taken:
            self.release(step_id, at_ms)

    def release(self, step_id: str, at_ms: int) -> None:
        """Emit step-ready for the step's next attempt."""
        self.send(step_id, self.steps[step_id].attempt + 1, at_ms)

    def send(self, step_id: str, attempt: int, at_ms: int) -> None:
        """Emit step-ready for this attempt of the step."""
        definition = self.state.definition
        self.steps[step_id] = self.steps[step_id]._replace(
            status=StepStatus.RUNNING, attempt=attempt, retry_at_ms=None, ready_at_ms=at_ms
        )
        step_definition = definition.step_by_id[step_id]
        inputs = {
            "input": self.state.input,
            "steps": {d: self.steps[d].output for d in step_definition.depends_on},
        }
        self.commands.append(
            EmitStepReady(
                step_id=step_id,
                step_type=step_definition.type,
                attempt=attempt,
                inputs=inputs,
                config=step_definition.config,
                timeout_ms=definition.timeout_ms(step_id),
            )
        )
        if step_definition.queue is not None:
            due = at_ms + definition.timeout_ms(step_id)
            self.commands.append(ScheduleTimeout(step_id, attempt, due))

    def finish(self, **changes: Any) -> Transition:
        state = replace(
            self.state,
            steps=self.steps,
            queue=tuple(self.queue),
            outstanding=self.outstanding,
            **changes,
        )
        return state, tuple(self.commands)
