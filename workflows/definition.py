"""Workflow definitions as frozen data: what a workflow is, independent of any run of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

from stepstream.workflows.children import ChildWorkflow
from stepstream.workflows.expressions import Condition, compile_condition
from stepstream.workflows.fan_out import ForEach, parent_of
from stepstream.workflows.forms import Form, compile_form
from stepstream.workflows.rate_limit import RateLimit


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing step is tried, and how long to wait between tries.

    The delay before attempt n+1 is `initial_backoff_ms * multiplier**(n-1)`, spread by
    +/- `jitter` (a fraction) and capped at `max_backoff_ms`.
    """

    max_attempts: int = 1
    initial_backoff_ms: int = 1_000
    multiplier: float = 2.0
    max_backoff_ms: int = 60_000
    jitter: float = 0.2


class Trigger(StrEnum):
    """When a step with dependencies runs, decided once every dependency has finished
    (completed, skipped, or failed), never on the first one to arrive."""

    # Skipped only if every dependency was skipped; else it runs if none failed.
    NONE_FAILED = "none_failed"
    ALL_SUCCESS = "all_success"  # every dependency completed; any skipped one skips it
    ALL_DONE = "all_done"  # runs whatever its dependencies' outcomes (cleanup, notify)


WAIT_TYPE = "wait"  # the type of a step that holds a durable timer (`wait:`)
EVENT_TYPE = "event"  # the type of a step that waits for an event from outside (`waitFor:`)
HUMAN_TYPE = "human"  # the type of a step that waits for a person's answer (`human:`)


@dataclass(frozen=True, slots=True)
class Wait:
    """A durable timer: the step completes `for_ms` after its release, or at the
    instant its `until` expression gives. No worker runs it: the coordinator holds it."""

    for_ms: int | None = None
    until: str | None = None  # an expression (workflows.expressions) giving an instant


class OnTimeout(StrEnum):
    """What a wait for an event does when its timeout passes first."""

    FAIL = "fail"  # the step fails (no retry: nothing ran), and the workflow with it
    SKIP = "skip"  # the step is skipped; its dependents follow their trigger rules
    CONTINUE = "continue"  # the step completes with {"timed_out": true}, for a `when:`


@dataclass(frozen=True, slots=True)
class WaitFor:
    """A wait for a named event from outside. No worker runs it: the coordinator holds
    it, the correlator (`stepstream.workflows.correlation`) routes the event to it.
    The event is addressed by `correlation_key` (an expression over input and steps,
    read when the step is released) or by the execution's id (a signal)."""

    event: str
    correlation_key: str | None = None  # an expression (workflows.expressions)
    timeout_ms: int | None = None  # None: waits as long as the execution lives
    on_timeout: OnTimeout = OnTimeout.FAIL


@dataclass(frozen=True, slots=True)
class HumanTask:
    """A task for a person: the step completes with their answer, which must match
    `form` (a JSON Schema). No worker runs it: the coordinator holds it, the answer
    comes to the execution's partition (a `TaskAnswered`), and `assignee` (an
    expression over input and steps, read at release) says whose task it is."""

    form: Mapping[str, Any]
    assignee: str | None = None  # None: anyone of the tenant may answer
    title: str | None = None
    timeout_ms: int | None = None  # None: waits as long as the execution lives
    on_timeout: OnTimeout = OnTimeout.FAIL


@dataclass(frozen=True, slots=True)
class StepDefinition:
    id: str
    type: str
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy | None = None
    timeout_ms: int | None = None
    parallel: bool | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None  # a task queue: its step-ready events go to workers of their own
    when: str | None = None  # a condition (workflows.expressions); false: the step is skipped
    trigger: Trigger = Trigger.NONE_FAILED
    wait: Wait | None = None
    wait_for: WaitFor | None = None
    human: HumanTask | None = None
    for_each: ForEach | None = None  # one instance per item of a list read at run time
    child: ChildWorkflow | None = None  # a sub-workflow this step starts and waits for
    source: str | None = None  # where a step expanded from a template came from

    @property
    def held(self) -> bool:
        """No worker runs it: the coordinator holds it (a timer, a wait for an event,
        for a person's answer or for a child execution)."""
        return (
            self.wait is not None
            or self.wait_for is not None
            or self.human is not None
            or self.child is not None
        )

    @property
    def limit(self) -> WaitFor | HumanTask | None:
        """What a wait that may time out waits for: its timeout and `onTimeout`."""
        return self.wait_for or self.human


@dataclass(frozen=True, slots=True)
class StepTypeDefaults:
    """What a step type's package declares for the steps of that type that set nothing."""

    timeout_ms: int | None = None
    retry: RetryPolicy | None = None


@dataclass(frozen=True, slots=True)
class DefaultPolicies:
    """Policies for steps that do not set their own."""

    retry: RetryPolicy = RetryPolicy()
    timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class DependencyGraph:
    """The adjacency a valid definition implies, computed once per definition."""

    dependents: Mapping[str, tuple[str, ...]]
    levels: tuple[tuple[str, ...], ...]
    order: tuple[str, ...]
    position: Mapping[str, int]

    def descendants(self, step_id: str) -> tuple[str, ...]:
        """Every step that depends on `step_id`, directly or not, in plan order."""
        found: set[str] = set()
        pending = [step_id]
        while pending:
            for dependent in self.dependents[pending.pop()]:
                if dependent not in found:
                    found.add(dependent)
                    pending.append(dependent)
        return tuple(sorted(found, key=self.position.__getitem__))


@dataclass(frozen=True)
class WorkflowDefinition:
    """A validated workflow. Build one with `stepstream.workflows.validation.build_definition`."""

    id: str
    version: int
    name: str
    steps: tuple[StepDefinition, ...]
    defaults: DefaultPolicies = DefaultPolicies()
    rate_limit: RateLimit | None = None  # per user, for starts of this workflow

    @cached_property
    def step_by_id(self) -> Mapping[str, StepDefinition]:
        return {step.id: step for step in self.steps}

    @cached_property
    def graph(self) -> DependencyGraph:
        return dependency_graph(self.steps)

    @cached_property
    def conditions(self) -> Mapping[str, Condition]:
        """Each conditional step's compiled `when` (validation has compiled them once)."""
        return {s.id: compile_condition(s.when) for s in self.steps if s.when is not None}

    @cached_property
    def instants(self) -> Mapping[str, Condition]:
        """Each `wait: {until}` step's compiled expression."""
        return {
            s.id: compile_condition(s.wait.until)
            for s in self.steps
            if s.wait is not None and s.wait.until is not None
        }

    @cached_property
    def correlation_keys(self) -> Mapping[str, Condition]:
        """Each `waitFor` step's compiled correlation key expression."""
        return {
            s.id: compile_condition(s.wait_for.correlation_key)
            for s in self.steps
            if s.wait_for is not None and s.wait_for.correlation_key is not None
        }

    @cached_property
    def assignees(self) -> Mapping[str, Condition]:
        """Each human step's compiled assignee expression."""
        return {
            s.id: compile_condition(s.human.assignee)
            for s in self.steps
            if s.human is not None and s.human.assignee is not None
        }

    @cached_property
    def forms(self) -> Mapping[str, Form]:
        """Each human step's form, compiled once (validation has checked it)."""
        return {s.id: compile_form(s.human.form) for s in self.steps if s.human is not None}

    @cached_property
    def fan_outs(self) -> tuple[str, ...]:
        """The `forEach` steps, in plan order."""
        return tuple(s for s in self.graph.order if self.step_by_id[s].for_each is not None)

    @cached_property
    def item_lists(self) -> Mapping[str, Condition]:
        """Each `forEach` step's compiled item expression."""
        return {
            s.id: compile_condition(s.for_each.items) for s in self.steps if s.for_each is not None
        }

    @cached_property
    def child_inputs(self) -> Mapping[str, Condition]:
        """Every child step's input expressions, compiled, by their text."""
        return {
            text: compile_condition(text)
            for s in self.steps
            if s.child is not None
            for text in s.child.expressions().values()
        }

    def step(self, step_id: str) -> StepDefinition:
        """The definition of a step, or of the `forEach` step an instance belongs to."""
        found = self.step_by_id.get(step_id)
        return found if found is not None else self.step_by_id[parent_of(step_id)]

    @cached_property
    def has_waits(self) -> bool:
        """Some step is held by the coordinator, and may keep a timer."""
        return any(step.held for step in self.steps)

    @cached_property
    def has_event_waits(self) -> bool:
        return any(step.wait_for is not None for step in self.steps)

    @cached_property
    def ancestors(self) -> Mapping[str, frozenset[str]]:
        """Every step each step depends on, directly or not."""
        found: dict[str, frozenset[str]] = {}
        for step_id in self.graph.order:
            step = self.step_by_id[step_id]
            found[step_id] = frozenset(step.depends_on).union(*(found[d] for d in step.depends_on))
        return found

    @cached_property
    def has_cleanup_steps(self) -> bool:
        return any(step.trigger is Trigger.ALL_DONE for step in self.steps)

    def retry_policy(self, step_id: str) -> RetryPolicy:
        return self.step(step_id).retry or self.defaults.retry

    def timeout_ms(self, step_id: str) -> int:
        timeout = self.step(step_id).timeout_ms
        return self.defaults.timeout_ms if timeout is None else timeout


def dependency_graph(steps: tuple[StepDefinition, ...]) -> DependencyGraph:
    """Levels by longest distance from a root; within a level, definition order.

    Assumes the steps form a DAG over known ids (validation guarantees it).
    """
    dependents: dict[str, list[str]] = {step.id: [] for step in steps}
    remaining = {step.id: len(step.depends_on) for step in steps}
    for step in steps:
        for dependency in step.depends_on:
            dependents[dependency].append(step.id)
    index = {step.id: i for i, step in enumerate(steps)}
    levels: list[tuple[str, ...]] = []
    current = [step.id for step in steps if remaining[step.id] == 0]
    while current:
        levels.append(tuple(current))
        following: list[str] = []
        for step_id in current:
            for dependent in dependents[step_id]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    following.append(dependent)
        current = sorted(following, key=index.__getitem__)
    order = tuple(step_id for level in levels for step_id in level)
    return DependencyGraph(
        dependents={key: tuple(value) for key, value in dependents.items()},
        levels=tuple(levels),
        order=order,
        position={step_id: i for i, step_id in enumerate(order)},
    )


def with_type_defaults(
    definition: WorkflowDefinition, defaults: Mapping[str, StepTypeDefaults]
) -> WorkflowDefinition:
    """The definition with each step's unset timeout and retry taken from its type's
    defaults. A step's own setting wins, then its type's, then the workflow's `defaults`.
    Applied when a definition is registered, so the stored definition says it all."""

    def filled(step: StepDefinition) -> StepDefinition:
        declared = defaults.get(step.type)
        if declared is None:
            return step
        timeout = step.timeout_ms if step.timeout_ms is not None else declared.timeout_ms
        return replace(step, timeout_ms=timeout, retry=step.retry or declared.retry)

    return replace(definition, steps=tuple(filled(step) for step in definition.steps))
