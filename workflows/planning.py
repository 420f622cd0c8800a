"""Execution plans: which steps may run together, what bounds the wall time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stepstream.workflows.definition import StepDefinition, WorkflowDefinition
from stepstream.workflows.durations import written_duration


@dataclass(frozen=True, slots=True)
class Plan:
    workflow_id: str
    version: int
    name: str
    levels: tuple[tuple[str, ...], ...]
    critical_path: tuple[str, ...]
    critical_path_duration: float
    total_duration: float

    @property
    def max_width(self) -> int:
        return max((len(level) for level in self.levels), default=0)

    @property
    def step_count(self) -> int:
        return sum(len(level) for level in self.levels)


def plan(definition: WorkflowDefinition, durations: Mapping[str, float] | None = None) -> Plan:
    """Levels (parallel groups, definition order within each), and the critical path.

    `durations` estimates each step's run time; a step without an estimate counts 1.
    """
    estimate = durations or {}
    graph = definition.graph
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for step_id in graph.order:
        step = definition.step_by_id[step_id]
        slowest: str | None = None
        for dependency in sorted(step.depends_on, key=graph.position.__getitem__):
            if slowest is None or finish[dependency] > finish[slowest]:
                slowest = dependency
        via[step_id] = slowest
        start = finish[slowest] if slowest is not None else 0.0
        finish[step_id] = start + float(estimate.get(step_id, 1.0))
    path: list[str] = []
    cursor: str | None = None
    for step_id in graph.order:  # the first step with the latest finish ends the path
        if cursor is None or finish[step_id] > finish[cursor]:
            cursor = step_id
    critical_duration = finish[cursor] if cursor is not None else 0.0
    while cursor is not None:
        path.append(cursor)
        cursor = via[cursor]
    return Plan(
        workflow_id=definition.id,
        version=definition.version,
        name=definition.name,
        levels=graph.levels,
        critical_path=tuple(reversed(path)),
        critical_path_duration=critical_duration,
        total_duration=sum(float(estimate.get(s.id, 1.0)) for s in definition.steps),
    )


def _waits(step: StepDefinition) -> str:
    """What a held step waits for, as `describe` says it."""
    if step.wait is not None:
        if step.wait.until is not None:
            return f", waits until {step.wait.until}"
        return f", waits {written_duration(step.wait.for_ms or 0)}"
    limit = step.limit
    if limit is None:
        return ""
    if step.wait_for is not None:
        key = f" by {step.wait_for.correlation_key}" if step.wait_for.correlation_key else ""
        line = f", waits for event {step.wait_for.event}{key}"
    else:
        assignee = step.human.assignee if step.human is not None else None
        line = f", waits for an answer from {assignee or 'anyone of the tenant'}"
    if limit.timeout_ms is not None:
        line += f" for {written_duration(limit.timeout_ms)}, then {limit.on_timeout}"
    return line


def describe(definition: WorkflowDefinition, durations: Mapping[str, float] | None = None) -> str:
    """A readable multi-line execution plan, for logs and the CLI."""
    result = plan(definition, durations)
    lines = [
        f"workflow {result.workflow_id} v{result.version} ({result.name}): "
        f"{result.step_count} steps in {len(result.levels)} levels, max width {result.max_width}"
    ]
    for number, level in enumerate(result.levels, start=1):
        together = " (in parallel)" if len(level) > 1 else ""
        lines.append(f"  level {number}{together}:")
        for step_id in level:
            step = definition.step_by_id[step_id]
            after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
            when = f" when {step.when}" if step.when is not None else ""
            trigger = f" (trigger {step.trigger})" if step.trigger != "none_failed" else ""
            fan = f", for each of {step.for_each.items}" if step.for_each is not None else ""
            child = ""
            if step.child is not None:
                pinned = f" v{step.child.version}" if step.child.version else ""
                child = f", runs workflow {step.child.workflow_id}{pinned}"
            line = f"    {step_id} [{step.type}]{after}{when}{trigger}{_waits(step)}{fan}{child}"
            lines.append(line)
            if step.source is not None:
                lines.append(f"      from {step.source}")
    lines.append(
        f"  critical path: {' -> '.join(result.critical_path)} "
        f"({result.critical_path_duration:g} of {result.total_duration:g} units if run in sequence)"
    )
    return "\n".join(lines)
