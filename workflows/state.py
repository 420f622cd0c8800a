"""The state of one execution, as the reducer keeps it and the checkpoint stores it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.fan_out import (
    DEFAULT_MAX_ITEMS,
    FanProgress,
    instance_id,
    split_instance,
)
from stepstream.workflows.messages import Command


class StepStatus(StrEnum):
    WAITING = "waiting"  # some dependency has not finished
    QUEUED = "queued"  # dependencies done, waiting for a free slot
    RUNNING = "running"  # step-ready emitted for the current attempt
    RETRYING = "retrying"  # failed, next attempt scheduled; keeps its slot
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # its condition or trigger rule said no; `error` says why


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # with a `failure`: failing, its cleanup steps still to run
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
FINISHED = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED})


class StepState(NamedTuple):
    """One step's part of the checkpoint. A NamedTuple: `_replace` is the reducer's
    most frequent operation, and it is several times cheaper than on a dataclass."""

    status: StepStatus
    remaining: int  # dependencies not yet finished (the in-degree counter)
    attempt: int = 0  # 1-based number of the current or last attempt; 0 = never ran
    output: Any = None
    error: str | None = None  # the last attempt's failure, or why the step was skipped
    retry_at_ms: int | None = None
    ready_at_ms: int | None = None  # when the current attempt was released
    started_at_ms: int | None = None  # as reported by the executor
    finished_at_ms: int | None = None
    base: int = 0  # attempts made before the current run (an operator's retry or rerun)
    alive_at_ms: int | None = None  # the current attempt's last heartbeat
    # Of the last attempt that ended (as `error`, `started_at_ms` and `finished_at_ms`):
    worker: str | None = None
    timed_out: bool | None = None  # None: not timed out (and nothing in the checkpoint)
    due_at_ms: int | None = None  # a wait step's: when its timer fires
    fan: FanProgress | None = None  # a running or ended `forEach` step's instances


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
    skipped_steps: int = 0
    failure: Failure | None = None  # set while failing (cleanup steps to run) and after
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    replays: tuple[str, ...] = ()  # operator requests applied, oldest first
    cancel_reason: str | None = None
    max_items: int = DEFAULT_MAX_ITEMS  # WORKFLOW_MAX_FOREACH_ITEMS when it started

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
    max_foreach_items: int = DEFAULT_MAX_ITEMS,
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
        max_items=max_foreach_items,
    )


def completed_outputs(steps: Mapping[str, StepState], step_ids: Iterable[str]) -> dict[str, Any]:
    """What an expression reading these steps sees: the outputs of those completed (a
    skipped step has none)."""
    return {s: steps[s].output for s in step_ids if steps[s].status is StepStatus.COMPLETED}


class StepMap(dict[str, StepState]):
    """A transition's step states, which remember which keys the transition set and the
    states they were copied from: what changed since the checkpoint was last written is
    then found without comparing every step (a fan-out may have 10,000)."""

    __slots__ = ("base", "touched")

    def __init__(self, base: Mapping[str, StepState]) -> None:
        super().__init__(base)
        self.base: Mapping[str, StepState] | None = base
        self.touched: set[str] = set()

    def __setitem__(self, key: str, value: StepState) -> None:
        self.touched.add(key)
        super().__setitem__(key, value)


def changed_steps(before: Mapping[str, StepState], after: Mapping[str, StepState]) -> list[str]:
    """The steps set since `before` (by the transitions from it to `after`), or, when the
    chain of transitions does not lead back to it, those whose state is another object.
    Cuts the chain at `after`: it is what the next call's `before` will be."""
    found: set[str] = set()
    current: Mapping[str, StepState] | None = after
    while current is not before:
        if not isinstance(current, StepMap) or current.base is None:
            found = {i for i, step in after.items() if step is not before.get(i)}
            break
        found |= current.touched
        current = current.base
    if isinstance(after, StepMap):
        after.base = None  # older states need not stay alive for this
    return list(found)


def is_current_attempt(state: ExecutionState, step_id: str, attempt: int) -> bool:
    """Whether a report for this attempt of the step is one to apply: the step runs it."""
    step = state.steps.get(step_id)
    if step is None or step.status is not StepStatus.RUNNING or step.attempt != attempt:
        return False
    split = split_instance(step_id)
    if split is None:
        return True
    # An instance runs for its step's current fan-out only: one left running by an
    # earlier run of the step (cancelled, failed fast, rerun) is not reported to.
    fan = state.steps[split[0]].fan
    return fan is not None and split[1] < fan.released and fan.running > 0


def in_flight_order(
    definition: WorkflowDefinition, steps: Mapping[str, StepState]
) -> Iterator[str]:
    """The steps in plan order, each fan-out step followed by its instances that have
    not finished (what may run, retry or time out; its others are done or not begun)."""
    for step_id in definition.graph.order:
        yield step_id
        fan = steps[step_id].fan
        if fan is not None and fan.running > 0:
            for index in range(fan.released):
                instance = instance_id(step_id, index)
                if steps[instance].status in (StepStatus.RUNNING, StepStatus.RETRYING):
                    yield instance


def deadline(definition: WorkflowDefinition, step_id: str, step: StepState) -> int | None:
    """When a queue step's current attempt times out: its step's timeout after its
    release or its last heartbeat. None for the built-in executor's steps (it enforces
    their timeouts itself, from when it starts them)."""
    if definition.step(step_id).queue is None or step.ready_at_ms is None:
        return None
    return max(step.ready_at_ms, step.alive_at_ms or 0) + definition.timeout_ms(step_id)


def ran_in_parallel(state: ExecutionState) -> bool:
    """Whether two steps were outstanding at once: released before the other finished
    (the seed's "parallel execution rate" counts executions where this held)."""
    spans = sorted(
        (step.ready_at_ms, step.finished_at_ms)
        for step in state.steps.values()
        if step.ready_at_ms is not None and step.finished_at_ms is not None
    )
    latest_finish = None
    for released, finished in spans:
        if latest_finish is not None and released < latest_finish:
            return True
        latest_finish = finished if latest_finish is None else max(latest_finish, finished)
    return False
