"""Operators' requests: resume a running execution, retry a failed one, rerun an ended
one from one of its steps, cancel one."""

from __future__ import annotations

from stepstream.workflows.children import OnParentCancel, child_execution_id
from stepstream.workflows.draft import Draft, advance
from stepstream.workflows.messages import CancelChild, CancelWorkflow, Replay, ReplayAction
from stepstream.workflows.state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    StepState,
    StepStatus,
    Transition,
    in_flight_order,
)


def replay_applies(state: ExecutionState, action: ReplayAction, step_id: str | None) -> bool:
    """Whether the request would change the execution: resume a running one, retry a
    failed one, rerun an ended one from one of its steps, cancel one not ended."""
    match action:
        case ReplayAction.CANCEL:
            return state.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
        case ReplayAction.RESUME:
            return state.status is ExecutionStatus.RUNNING
        case ReplayAction.RETRY:
            return state.status is ExecutionStatus.FAILED
        case ReplayAction.RERUN_FROM:
            return state.status in TERMINAL and step_id in state.definition.step_by_id
    return False


def apply_replay(state: ExecutionState, event: Replay) -> Transition:
    if event.request_id in state.replays or not replay_applies(state, event.action, event.step_id):
        return state, ()
    if event.action is ReplayAction.CANCEL:
        return _cancel(state, event)
    reset: tuple[str, ...] = ()
    if event.action is ReplayAction.RERUN_FROM and event.step_id is not None:
        reset = (event.step_id, *state.definition.graph.descendants(event.step_id))
    return _reopen(state, reset, event)


def children_to_cancel(state: ExecutionState, reason: str) -> list[CancelChild]:
    """The running children a cancel of their parent cancels (`onParentCancel: cancel`),
    also when a redelivered cancel announces it again."""
    cancels = []
    for step in state.definition.steps:
        running = state.steps[step.id]
        if step.child is None or running.status is not StepStatus.RUNNING:
            continue
        if step.child.on_parent_cancel is OnParentCancel.CANCEL:
            child_id = child_execution_id(state.execution_id, step.id, running.attempt)
            why = f"its parent {state.execution_id} was cancelled: {reason}".rstrip(": ")
            cancels.append(CancelChild(step.id, running.attempt, child_id, why))
    return cancels


def _cancel(state: ExecutionState, event: Replay) -> Transition:
    """The execution ends as cancelled: nothing new starts; reports of steps still
    running are recorded downstream but change nothing here."""
    draft = Draft(state)
    draft.queue.clear()
    draft.commands += children_to_cancel(state, event.reason)
    draft.commands.append(CancelWorkflow(event.reason, event.at_ms))
    return draft.finish(
        status=ExecutionStatus.CANCELLED,
        cancel_reason=event.reason,
        finished_at_ms=event.at_ms,
        replays=(*state.replays, event.request_id),
    )


def _reopen(state: ExecutionState, reset: tuple[str, ...], event: Replay) -> Transition:
    """Run again what has not completed: the `reset` steps from scratch, failed steps
    with a new attempt, running steps re-sent at their attempt (handlers key their side
    effects on it), retries now; skipped steps are decided again; then the queue as
    dependencies and slots allow."""
    draft = Draft(state)
    for step_id in reset:
        attempt = draft.steps[step_id].attempt
        draft.steps[step_id] = StepState(StepStatus.WAITING, 0, attempt=attempt, base=attempt)
    steps = state.definition.step_by_id
    done = {s for s in steps if draft.steps[s].status is StepStatus.COMPLETED}
    draft.queue, draft.outstanding, draft.failure = [], 0, None
    draft.completed, draft.skipped = len(done), 0
    ready = []
    for step_id in list(in_flight_order(state.definition, draft.steps)):
        step = draft.steps[step_id]
        if step.status is StepStatus.COMPLETED:
            continue
        if step.status is StepStatus.RUNNING and step.fan is not None:
            continue  # a fan-out holds no slot; its instances that run follow it here
        if step.status is StepStatus.RUNNING:
            draft.outstanding += 1
            draft.send(step_id, step.attempt, event.at_ms)
        elif step.status is StepStatus.RETRYING:
            draft.outstanding += 1
            draft.release(step_id, event.at_ms)
        elif step_id not in steps:
            continue  # a fan-out instance that failed: its step decided on it already
        else:  # waiting, queued, failed or skipped: settled again once its dependencies are
            remaining = sum(d not in done for d in steps[step_id].depends_on)
            base = step.attempt if step.status is StepStatus.FAILED else step.base
            draft.steps[step_id] = step._replace(
                status=StepStatus.WAITING, remaining=remaining, error=None, base=base
            )
            if remaining == 0:
                ready.append(step_id)
    draft.settle(ready)
    return advance(
        draft,
        event.at_ms,
        status=ExecutionStatus.RUNNING,
        finished_at_ms=None,
        cancel_reason=None,
        replays=(*state.replays, event.request_id),
    )
