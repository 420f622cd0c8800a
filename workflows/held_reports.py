"""What ends a held step's attempt, read as the report a worker would have sent: an event
from outside, a person's answer, a child execution's outcome. Pure; the reducer applies
the report as any step's (`stepstream.workflows.execution`)."""

from __future__ import annotations

from stepstream.workflows.children import CHILD_WORKER_PREFIX, child_execution_id
from stepstream.workflows.event_waits import EVENT_WORKER_PREFIX
from stepstream.workflows.human_tasks import HUMAN_WORKER_PREFIX, answer_problems
from stepstream.workflows.messages import (
    ChildEnded,
    EventArrived,
    StepCompleted,
    StepFailed,
    TaskAnswered,
)
from stepstream.workflows.state import ExecutionState, is_current_attempt

# A child that failed may succeed when started again (the step's retry policy decides);
# one that was cancelled or refused (an unknown workflow, too deep) would not.
RETRYABLE_CHILD_ENDS = frozenset({"failed"})


def held_report(
    state: ExecutionState, event: EventArrived | TaskAnswered | ChildEnded
) -> StepCompleted | StepFailed | None:
    """The report the event stands for; None when it is not for the attempt that waits
    (a stale attempt, a step that waits for something else, an answer that does not
    fit the form): it changes nothing."""
    step_definition = state.definition.step_by_id.get(event.step_id)
    if step_definition is None or not is_current_attempt(state, event.step_id, event.attempt):
        return None
    released = state.steps[event.step_id].ready_at_ms
    match event:
        case EventArrived():
            wait_for = step_definition.wait_for
            if wait_for is None or wait_for.event != event.name:
                return None
            # The event's id is kept as who ended the attempt: a copy is then not refused.
            worker = EVENT_WORKER_PREFIX + event.event_id
            return StepCompleted(
                event.step_id, event.attempt, event.payload, event.at_ms, released, worker
            )
        case TaskAnswered():
            if step_definition.human is None or answer_problems(state, event):
                return None
            worker = HUMAN_WORKER_PREFIX + event.answered_by
            return StepCompleted(
                event.step_id, event.attempt, event.answer, event.at_ms, released, worker
            )
        case ChildEnded():
            mine = child_execution_id(state.execution_id, event.step_id, event.attempt)
            if step_definition.child is None or event.child_id != mine:
                return None
            worker = CHILD_WORKER_PREFIX + event.child_id
            if event.status == "completed":
                return StepCompleted(
                    event.step_id, event.attempt, event.outputs, event.at_ms, released, worker
                )
            error = f"ChildFailed: {event.child_id} {event.status}: {event.error or ''}".strip()
            retryable = event.status in RETRYABLE_CHILD_ENDS
            return StepFailed(
                event.step_id, event.attempt, error, retryable, event.at_ms, released, worker
            )
    return None
