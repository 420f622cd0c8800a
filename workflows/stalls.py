"""Stalled executions: outstanding steps and no progress for longer than those steps'
timeouts plus a margin. A step past its timeout should have been reported as failed by
its executor; when nothing came, an event was lost, and the coordinator announces the
execution's outstanding commands again (the watchdog). Pure: times come in as data."""

from __future__ import annotations

from dataclasses import dataclass

from stepstream.workflows.execution import ExecutionState, ExecutionStatus, StepStatus
from stepstream.workflows.state import in_flight_order


@dataclass(frozen=True, slots=True)
class Waiting:
    """An outstanding step: running since `since_ms` (released then), or retrying,
    due at `since_ms`; `deadline_ms` is when its silence means a lost event (for a
    wait step, its timer's due time plus the margin)."""

    step_id: str
    status: StepStatus
    attempt: int
    since_ms: int
    deadline_ms: int

    def describe(self, now_ms: int) -> str:
        seconds = max(0, now_ms - self.since_ms) // 1000
        if self.status is StepStatus.RETRYING:
            return f"{self.step_id}: retry of attempt {self.attempt} due {seconds} s ago"
        return f"{self.step_id}: running, attempt {self.attempt}, for {seconds} s"


def waiting_on(state: ExecutionState, margin_ms: int) -> list[Waiting]:
    """The steps a running execution waits for, soonest deadline first."""
    if state.status is not ExecutionStatus.RUNNING:
        return []
    waiting = []
    for step_id in in_flight_order(state.definition, state.steps):
        step = state.steps[step_id]
        if step.fan is not None:
            continue  # a fan-out: its instances are what it waits for
        if step.status is StepStatus.RUNNING and step.due_at_ms is not None:
            since = step.ready_at_ms or 0  # a wait step: silent until its timer is due
            deadline = step.due_at_ms + margin_ms
        elif step.status is StepStatus.RUNNING and state.definition.step(step_id).held:
            continue  # a wait for an event with no timeout: silence is what it does
        elif step.status is StepStatus.RUNNING:
            since = max(step.ready_at_ms or 0, step.alive_at_ms or 0)  # a heartbeat counts
            deadline = since + state.definition.timeout_ms(step_id) + margin_ms
        elif step.status is StepStatus.RETRYING and step.retry_at_ms is not None:
            since = step.retry_at_ms
            deadline = since + margin_ms
        else:
            continue
        waiting.append(Waiting(step_id, step.status, step.attempt, since, deadline))
    return sorted(waiting, key=lambda w: w.deadline_ms)


def stall_deadline(state: ExecutionState, margin_ms: int) -> int | None:
    """When the execution counts as stalled if nothing happens first (None: it waits
    for nothing). The earliest deadline of `waiting_on`, without building it: this runs
    after every checkpoint write. A running fan-out counts as one step, alive as long as
    some instance was released or finished within the step's timeout: its instances
    are not looked at one by one (`waiting_on` lists them)."""
    if state.status is not ExecutionStatus.RUNNING:
        return None
    definition = state.definition
    earliest: int | None = None
    for step_id in definition.graph.order:  # a fan-out's instances: by the step (below)
        step = state.steps[step_id]
        if step.status is StepStatus.RUNNING and step.due_at_ms is not None:
            deadline = step.due_at_ms
        elif step.status is StepStatus.RUNNING and definition.step(step_id).held:
            continue
        elif step.status is StepStatus.RUNNING:
            since = max(step.ready_at_ms or 0, step.alive_at_ms or 0)
            deadline = since + definition.timeout_ms(step_id)
        elif step.status is StepStatus.RETRYING and step.retry_at_ms is not None:
            deadline = step.retry_at_ms
        else:
            continue
        if earliest is None or deadline < earliest:
            earliest = deadline
    return None if earliest is None else earliest + margin_ms
