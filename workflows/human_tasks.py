"""Human tasks, as the reducer sees them: whose task a step is, and why an answer was
not applied. Pure. An answer comes addressed by execution, step and attempt (a person
answers a task they were shown), so it needs no correlator: it goes to the execution's
partition as a `TaskAnswered`, and the coordinator applies it once it fits the form."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.expressions import EvaluationError
from stepstream.workflows.forms import answer_errors
from stepstream.workflows.messages import AttemptOutcome, EndAttempt, TaskAnswered
from stepstream.workflows.state import TERMINAL, ExecutionState, StepStatus, completed_outputs

HUMAN_WORKER_PREFIX = "human:"  # a step ended by an answer records who answered as its worker
ANSWER_REPORT = "answer"  # an ignored answer's kind, beside "completed" and "failed" reports


class AssigneeError(ValueError):
    """An assignee expression that cannot be read, or does not give a name."""


def assignee(
    definition: WorkflowDefinition,
    step_id: str,
    workflow_input: Mapping[str, Any],
    outputs_of: Callable[[Iterable[str]], dict[str, Any]],
) -> str | None:
    """Whose task the step is (None: anyone of the tenant's). Read from the input and
    the completed steps' outputs, which do not change while the task is open."""
    expression = definition.assignees.get(step_id)
    if expression is None:
        return None
    try:
        return expression.name(workflow_input, outputs_of(expression.steps))
    except EvaluationError as error:
        raise AssigneeError(f"{expression.text}: {error}") from error


def task_assignee(state: ExecutionState, step_id: str) -> str | None:
    """`assignee` of a step of this state; one that could not be read never opened a
    task (its step failed), so it is None here."""

    def outputs_of(step_ids: Iterable[str]) -> dict[str, Any]:
        return completed_outputs(state.steps, step_ids)

    try:
        return assignee(state.definition, step_id, state.input, outputs_of)
    except AssigneeError:
        return None


def answer_problems(state: ExecutionState, answer: TaskAnswered) -> list[str]:
    """Why the answer does not fit its task's form (empty: it does, or there is no form)."""
    form = state.definition.forms.get(answer.step_id)
    return [] if form is None else answer_errors(form, answer.answer)


def ignored_answer(state: ExecutionState, answer: TaskAnswered) -> EndAttempt | None:
    """Why an answer the reducer did not apply was ignored; None for a copy of the answer
    that completed the task (applied once, silently)."""
    step = state.steps.get(answer.step_id)
    definition = state.definition.step_by_id.get(answer.step_id)
    worker = HUMAN_WORKER_PREFIX + answer.answered_by
    if step is None or definition is None or definition.human is None:
        reason = f"step {answer.step_id!r} of {state.definition.id} is not a human task"
    elif step.attempt == answer.attempt and step.status is StepStatus.COMPLETED:
        if step.worker == worker and step.output == answer.answer:
            return None
        reason = f"the task was answered already, by {step.worker or 'its timeout'}"
    elif state.status in TERMINAL:
        reason = f"the execution has ended ({state.status})"
    elif step.attempt != answer.attempt:
        reason = f"not the task's current attempt (current {step.attempt})"
    elif step.status is not StepStatus.RUNNING:
        reason = f"the task is not open (the step is {step.status})"
    else:
        reason = "the answer does not match the form: " + "; ".join(answer_problems(state, answer))
    return EndAttempt(
        answer.step_id,
        answer.attempt,
        AttemptOutcome.IGNORED,
        error=reason,
        finished_at_ms=answer.at_ms,
        worker=worker,
        report=ANSWER_REPORT,
    )
