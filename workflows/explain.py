"""Why is this step not running? An answer per step, read from the checkpoint alone."""

from __future__ import annotations

from datetime import UTC, datetime

from stepstream.workflows.children import child_execution_id
from stepstream.workflows.event_waits import state_key
from stepstream.workflows.human_tasks import task_assignee
from stepstream.workflows.state import ExecutionState, ExecutionStatus, StepState, StepStatus


def explain(state: ExecutionState, now_ms: int, step_id: str | None = None) -> dict[str, str]:
    """Each step's answer (only `step_id`'s when given; every unfinished step's and every
    skipped one's otherwise), in plan order."""
    order = state.definition.graph.order
    wanted = [step_id] if step_id is not None else order
    answers = {}
    for wanted_id in wanted:
        step = state.steps[wanted_id]
        if step_id is None and step.status in (StepStatus.COMPLETED, StepStatus.FAILED):
            continue
        answers[wanted_id] = _answer(state, wanted_id, step, now_ms)
    return answers


def _answer(state: ExecutionState, step_id: str, step: StepState, now_ms: int) -> str:
    status = step.status
    if status is StepStatus.COMPLETED:
        return f"completed (attempt {step.attempt})"
    if status is StepStatus.FAILED:
        return f"failed: {step.error}"
    if status is StepStatus.SKIPPED:
        return f"skipped: {step.error}"
    if state.status is ExecutionStatus.CANCELLED:
        return f"cancelled: {state.cancel_reason or 'no reason given'}"
    if state.status is ExecutionStatus.FAILED:
        return "not started: the workflow failed"
    if state.status is ExecutionStatus.PENDING:
        return "not started: the execution has not started yet"
    if status is StepStatus.RUNNING:
        return _running(state, step_id, step, now_ms)
    if status is StepStatus.RETRYING:
        failed = f"attempt {step.attempt} failed: {step.error}"
        return f"waiting for its retry at {_clock(step.retry_at_ms)} ({failed})"
    if status is StepStatus.QUEUED:
        limit = state.max_outstanding
        return f"held by the parallel limit ({state.outstanding} of {limit} outstanding)"
    waiting = [
        f"{d} ({_waiting_for(state, d, now_ms)})"
        for d in state.definition.step_by_id[step_id].depends_on
        if state.steps[d].status
        not in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED)
    ]
    return "waiting on " + ", ".join(waiting)


def _running(state: ExecutionState, step_id: str, step: StepState, now_ms: int) -> str:
    step_definition = state.definition.step(step_id)
    if step.fan is not None:
        text = step_definition.for_each.items if step_definition.for_each else "?"
        return f"fanned out over {text}: {step.fan.progress()}, {step.fan.running} running"
    if step_definition.child is not None:
        child_id = child_execution_id(state.execution_id, step_id, step.attempt)
        workflow = step_definition.child.workflow_id
        return f"waiting for its child {child_id} (workflow {workflow}) to end"
    limit = step_definition.limit
    if limit is not None:
        if step_definition.wait_for is not None:
            key = state_key(state, step_id)
            addressed = f"correlation key {key!r} or a signal" if key is not None else "a signal"
            what = f"waiting for event {step_definition.wait_for.event!r} ({addressed})"
        else:
            whose = task_assignee(state, step_id)
            what = f"waiting for an answer from {whose or 'anyone of the tenant'}"
        if step.due_at_ms is None:
            return f"{what}, with no timeout"
        left = (step.due_at_ms - now_ms) // 1000
        until = f"until {_clock(step.due_at_ms)} (in {max(0, left)} s)"
        return f"{what}, {until}, then {limit.on_timeout}"
    if step.due_at_ms is not None:
        left = (step.due_at_ms - now_ms) // 1000
        when = f"in {left} s" if left >= 0 else f"{-left} s ago, firing"
        return f"waiting for its timer, due at {_clock(step.due_at_ms)} ({when})"
    since = now_ms if step.ready_at_ms is None else step.ready_at_ms
    seconds = max(0, now_ms - since) // 1000
    queue = step_definition.queue
    where = f" on queue {queue}" if queue else ""
    return f"running{where}, attempt {step.attempt}, for {seconds} s"


def _waiting_for(state: ExecutionState, step_id: str, now_ms: int) -> str:
    step = state.steps[step_id]
    if step.status is StepStatus.RUNNING:
        return _running(state, step_id, step, now_ms)
    if step.status is StepStatus.RETRYING:
        return f"retry at {_clock(step.retry_at_ms)}"
    return str(step.status)


def _clock(ms: int | None) -> str:
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S UTC")
