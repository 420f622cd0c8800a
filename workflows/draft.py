"""The reducer's working copy of one transition."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stepstream.workflows.messages import Command, EmitStepReady, ScheduleTimeout
from stepstream.workflows.state import ExecutionState, StepStatus, Transition, deadline


class Draft:
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
        step = self.steps[step_id]
        self.steps[step_id] = step._replace(
            status=StepStatus.RUNNING,
            attempt=attempt,
            retry_at_ms=None,
            ready_at_ms=at_ms,
            alive_at_ms=step.alive_at_ms if attempt == step.attempt else None,
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
        due = deadline(definition, step_id, self.steps[step_id])
        if due is not None:
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
