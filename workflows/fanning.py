"""How a transition runs a `forEach` step (`stepstream.workflows.fan_out`): read its
items and begin, release its instances as slots allow, count them as they finish, and
end it with the list of their outputs in item order, or fail it by its failure policy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepstream.workflows.expressions import EvaluationError
from stepstream.workflows.fan_out import (
    FanProgress,
    ForEach,
    ForEachError,
    checked_items,
    failed_entry,
    instance_id,
    over_tolerance,
    split_instance,
    tolerance_error,
)
from stepstream.workflows.messages import AttemptOutcome, EndAttempt
from stepstream.workflows.state import Failure, StepState, StepStatus

if TYPE_CHECKING:
    from stepstream.workflows.draft import Draft

FAN_OUT_WORKER = "fan-out"  # who ended a fan-out step's attempt: its instances


def items(draft: Draft, step_id: str) -> list[Any]:
    """The step's item list, read from the input and its dependencies' outputs."""
    cached = draft.item_lists.get(step_id)
    if cached is not None:
        return cached
    expression = draft.state.definition.item_lists[step_id]
    try:
        value = expression.value(draft.state.input, draft.outputs_of(expression.steps))
    except EvaluationError as error:
        raise ForEachError(f"forEach {expression.text}: {error}") from error
    listed = checked_items(value, expression.text, draft.state.max_items)
    draft.item_lists[step_id] = listed
    return listed


def fan_out(draft: Draft, step_id: str, attempt: int, at_ms: int) -> None:
    """Begin attempt `attempt` of a `forEach` step, taken from the queue with a slot: it
    gives the slot back (its instances take slots of their own). An empty list completes
    it with []; a list that cannot be read, or is over the cap, fails it."""
    step = draft.steps[step_id]
    draft.outstanding -= 1
    try:
        count = len(items(draft, step_id))
    except ForEachError as error:
        message = f"ForEachError: {error}"
        draft.steps[step_id] = step._replace(attempt=attempt, ready_at_ms=at_ms)
        _end(draft, step_id, at_ms, AttemptOutcome.FAILED, error=message)
        draft.broken.append(Failure(step_id, message))
        return
    draft.steps[step_id] = step._replace(
        status=StepStatus.RUNNING,
        attempt=attempt,
        retry_at_ms=None,
        ready_at_ms=at_ms,
        fan=FanProgress(count),
    )
    if count == 0:
        fan_in(draft, step_id, at_ms)


def release_instances(draft: Draft, step_id: str, at_ms: int) -> None:
    """Release the step's next instances, in item order, while the execution has slots
    and the step is under its `maxParallel`. Nothing new starts in a failing workflow."""
    step = draft.steps[step_id]
    fan = step.fan
    if step.status is not StepStatus.RUNNING or fan is None or draft.failure is not None:
        return
    for_each = _for_each(draft, step_id)
    limit = for_each.max_parallel or fan.items
    start = fan.released
    while (
        fan.released < fan.items
        and fan.running < limit
        and draft.outstanding < draft.state.max_outstanding
    ):
        fan = fan._replace(released=fan.released + 1, running=fan.running + 1)
        draft.outstanding += 1
    if fan.released == start:
        return
    draft.steps[step_id] = step._replace(fan=fan, alive_at_ms=at_ms)
    for index in range(start, fan.released):
        instance = instance_id(step_id, index)
        # An earlier run's instance keeps counting its attempts: its late reports are
        # then stale, and the retry policy counts this run's attempts only.
        before = draft.steps.get(instance)
        tried = 0 if before is None else before.attempt
        draft.steps[instance] = StepState(StepStatus.QUEUED, 0, attempt=tried, base=tried)
        draft.release(instance, at_ms)


def instance_finished(draft: Draft, instance: str, at_ms: int) -> None:
    """An instance completed, or failed for good (its retries spent): count it, and end
    the step once every instance has finished or its failures are over its policy."""
    step_id, _ = _split(instance)
    step = draft.steps[step_id]
    fan = step.fan
    assert fan is not None
    failed = draft.steps[instance].status is StepStatus.FAILED
    fan = fan._replace(running=fan.running - 1, failed=fan.failed + failed)
    draft.steps[step_id] = step = step._replace(fan=fan, alive_at_ms=at_ms)
    if step.status is not StepStatus.RUNNING:
        return  # a straggler of a step that failed fast: counted, nothing more
    for_each = _for_each(draft, step_id)
    if failed and over_tolerance(for_each, fan):
        error = tolerance_error(for_each, fan, draft.steps[instance].error or "failed")
        _end(draft, step_id, at_ms, AttemptOutcome.FAILED, error=error)
        draft.broken.append(Failure(step_id, error))
    elif fan.done:
        fan_in(draft, step_id, at_ms)


def fan_in(draft: Draft, step_id: str, at_ms: int) -> None:
    """Every instance finished: the step completes with their outputs, in item order (a
    failed instance, kept by `continue` or `tolerate`, leaves its error in its place)."""
    step = draft.steps[step_id]
    assert step.fan is not None
    outputs = []
    for index in range(step.fan.items):
        instance = draft.steps[instance_id(step_id, index)]
        completed = instance.status is StepStatus.COMPLETED
        outputs.append(instance.output if completed else failed_entry(instance.error))
    _end(draft, step_id, at_ms, AttemptOutcome.COMPLETED, output=outputs)
    draft.completed += 1
    draft.dependency_finished(step_id)


def _end(
    draft: Draft,
    step_id: str,
    at_ms: int,
    outcome: AttemptOutcome,
    output: Any = None,
    error: str | None = None,
) -> None:
    """The fan-out step's attempt ends (its instances ended it): its state and decision."""
    step = draft.steps[step_id]
    completed = outcome is AttemptOutcome.COMPLETED
    draft.steps[step_id] = step._replace(
        status=StepStatus.COMPLETED if completed else StepStatus.FAILED,
        output=output,
        error=error,
        started_at_ms=step.ready_at_ms,
        finished_at_ms=at_ms,
        worker=FAN_OUT_WORKER,
    )
    draft.commands.append(
        EndAttempt(
            step_id,
            step.attempt,
            outcome,
            output=output,
            error=error,
            started_at_ms=step.ready_at_ms,
            finished_at_ms=at_ms,
            worker=FAN_OUT_WORKER,
            released_at_ms=step.ready_at_ms,
        )
    )


def item_of(draft: Draft, instance: str) -> tuple[ForEach, Any, int]:
    """An instance's `forEach`, item and index, for its step-ready."""
    step_id, index = _split(instance)
    return _for_each(draft, step_id), items(draft, step_id)[index], index


def _for_each(draft: Draft, step_id: str) -> ForEach:
    for_each = draft.state.definition.step_by_id[step_id].for_each
    assert for_each is not None
    return for_each


def _split(instance: str) -> tuple[str, int]:
    split = split_instance(instance)
    assert split is not None
    return split
