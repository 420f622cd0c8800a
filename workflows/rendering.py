"""Plans drawn as Mermaid flowcharts and Graphviz DOT; the critical path is emphasised."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from stepstream.workflows.definition import WorkflowDefinition
from stepstream.workflows.planning import plan


def _critical_edges(
    definition: WorkflowDefinition, durations: Mapping[str, float] | None
) -> set[tuple[str, str]]:
    path = plan(definition, durations).critical_path
    return set(itertools.pairwise(path))


def to_mermaid(definition: WorkflowDefinition, durations: Mapping[str, float] | None = None) -> str:
    node = {step_id: f"s{i}" for i, step_id in enumerate(definition.graph.order)}
    critical = _critical_edges(definition, durations)
    lines = ["flowchart TD"]
    for step_id in definition.graph.order:
        step = definition.step_by_id[step_id]
        label = f"{step.id}<br/>{step.type}".replace('"', "#quot;")
        lines.append(f'    {node[step_id]}["{label}"]')
    for step_id in definition.graph.order:
        for dependency in definition.step_by_id[step_id].depends_on:
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
        lines.append(f"    {_dot_quote(step_id)} [label={_dot_quote(step.id, step.type)}];")
    for step_id in definition.graph.order:
        for dependency in definition.step_by_id[step_id].depends_on:
            style = " [penwidth=2.5]" if (dependency, step_id) in critical else ""
            lines.append(f"    {_dot_quote(dependency)} -> {_dot_quote(step_id)}{style};")
    lines.append("}")
    return "\n".join(lines)
