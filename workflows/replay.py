"""Operators' requests: resume a running execution, retry a failed one, rerun an ended
one from one of its steps."""

from __future__ import annotations

from stepstream.workflows.draft import Draft
from stepstream.workflows.messages import Replay, ReplayAction
from stepstream.workflows.state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    StepState,
    StepStatus,
    Transition,
)


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


def apply_replay(state: ExecutionState, event: Replay) -> Transition:
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
    draft = Draft(state)
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
