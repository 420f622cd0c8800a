"""Plans drawn as Mermaid flowcharts and Graphviz DOT; the critical path is emphasised.
The edges into a step with a condition are dashed and labelled with it (a root step with
one shows it in its box); a trigger other than the default is named in the step's box."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from stepstream.workflows.definition import StepDefinition, Trigger, WorkflowDefinition
from stepstream.workflows.planning import plan


def _critical_edges(
    definition: WorkflowDefinition, durations: Mapping[str, float] | None
) -> set[tuple[str, str]]:
    path = plan(definition, durations).critical_path
    return set(itertools.pairwise(path))


def _box(step: StepDefinition) -> list[str]:
    lines = [step.id, step.type]
    if step.trigger is not Trigger.NONE_FAILED:
        lines.append(f"trigger: {step.trigger}")
    if step.when is not None and not step.depends_on:
        lines.append(f"when: {step.when}")
    if step.for_each is not None:  # one node for every instance it will run
        lines.append(f"for each of {step.for_each.items}")
    if step.child is not None:
        lines.append(f"runs workflow {step.child.workflow_id}")
    return lines


def to_mermaid(definition: WorkflowDefinition, durations: Mapping[str, float] | None = None) -> str:
    node = {step_id: f"s{i}" for i, step_id in enumerate(definition.graph.order)}
    critical = _critical_edges(definition, durations)
    lines = ["flowchart TD"]
    for step_id in definition.graph.order:
        label = "<br/>".join(_box(definition.step_by_id[step_id])).replace('"', "#quot;")
        lines.append(f'    {node[step_id]}["{label}"]')
    for step_id in definition.graph.order:
        step = definition.step_by_id[step_id]
        for dependency in step.depends_on:
            if step.when is not None:
                condition = step.when.replace('"', "#quot;")
                lines.append(f'    {node[dependency]} -.->|"when: {condition}"| {node[step_id]}')
                continue
            arrow = "==>" if (dependency, step_id) in critical else "-->"
            lines.append(f"    {node[dependency]} {arrow} {node[step_id]}")
    return "\n".join(lines)


def _dot_quote(*lines: str) -> str:
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(definition: WorkflowDefinition, durations: Mapping[str, float] | None = None) -> str:
    critical = _critical_edges(definition, durations)
    lines = [f"digraph {_dot_quote(definition.id)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for step_id in definition.graph.order:
        step = definition.step_by_id[step_id]
        lines.append(f"    {_dot_quote(step_id)} [label={_dot_quote(*_box(step))}];")
    for step_id in definition.graph.order:
        step = definition.step_by_id[step_id]
        for dependency in step.depends_on:
            if step.when is not None:
                style = f" [style=dashed, label={_dot_quote('when: ' + step.when)}]"
            elif (dependency, step_id) in critical:
                style = " [penwidth=2.5]"
            else:
                style = ""
            lines.append(f"    {_dot_quote(dependency)} -> {_dot_quote(step_id)}{style};")
    lines.append("}")
    return "\n".join(lines)
