"""Waits for events from outside, as the reducer sees them: the key a wait is addressed
by, the subscriptions a transition ends, and why a delivered event does not fit. Pure:
the correlator's side is `stepstream.workflows.correlation`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.expressions import EvaluationError
from stepstream.workflows.messages import EventArrived, RefuseEvent, Unsubscribe
from stepstream.workflows.state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    StepStatus,
    completed_outputs,
)

EVENT_WORKER_PREFIX = "event:"  # a step ended by an event records it as its worker


class CorrelationKeyError(ValueError):
    """A correlation key that cannot be read, or is not a string or an integer."""


def correlation_key(
    definition: WorkflowDefinition,
    step_id: str,
    workflow_input: Mapping[str, Any],
    outputs_of: Callable[[Iterable[str]], dict[str, Any]],
) -> str | None:
    """The key a `waitFor` step's event is addressed by (None: by execution id only).
    Read from the input and the completed steps' outputs, which do not change while the
    step waits, so reading it again gives the same key."""
    expression = definition.correlation_keys.get(step_id)
    if expression is None:
        return None
    try:
        return expression.name(workflow_input, outputs_of(expression.steps))
    except EvaluationError as error:
        raise CorrelationKeyError(f"{expression.text}: {error}") from error


def state_key(state: ExecutionState, step_id: str) -> str | None:
    """`correlation_key` of a step of this state; one that could not be read was never
    subscribed (its step failed), so it is None here."""

    def outputs_of(step_ids: Iterable[str]) -> dict[str, Any]:
        return completed_outputs(state.steps, step_ids)

    try:
        return correlation_key(state.definition, step_id, state.input, outputs_of)
    except CorrelationKeyError:
        return None


def ended_waits(before: ExecutionState, after: ExecutionState) -> list[Unsubscribe]:
    """The waits for events `before` held and `after` does not: the step was ended (by
    its event, its timeout, an operator's rerun) or the execution was."""
    if before.status is not ExecutionStatus.RUNNING:
        return []
    ended = []
    for step in before.definition.steps:
        if step.wait_for is None:
            continue
        held = before.steps[step.id]
        if held.status is not StepStatus.RUNNING:
            continue
        now = after.steps[step.id]
        if (
            after.status is ExecutionStatus.RUNNING
            and now.status is StepStatus.RUNNING
            and now.attempt == held.attempt
        ):
            continue
        key = state_key(before, step.id)
        ended.append(Unsubscribe(step.id, held.attempt, step.wait_for.event, key))
    return ended


def refused_event(state: ExecutionState, event: EventArrived) -> RefuseEvent | None:
    """Why a delivered event was not applied; None for a copy of the event that ended
    its wait (delivered again after a redelivery): that one is applied once, silently."""
    step = state.steps.get(event.step_id)
    definition = state.definition.step_by_id.get(event.step_id)
    if step is None or definition is None:
        reason = f"no step {event.step_id!r} in {state.definition.id}"
    elif step.attempt == event.attempt and step.worker == EVENT_WORKER_PREFIX + event.event_id:
        return None
    elif definition.wait_for is None or definition.wait_for.event != event.name:
        reason = f"step {event.step_id} does not wait for {event.name!r}"
    elif state.status in TERMINAL:
        reason = f"the execution has ended ({state.status})"
    elif step.attempt != event.attempt:
        reason = f"not the current attempt (current {step.attempt})"
    else:
        reason = f"the step is {step.status}, not waiting"
    return RefuseEvent(event, reason)
