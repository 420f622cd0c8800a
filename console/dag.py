"""An execution's DAG as inline SVG: steps laid out by plan level, coloured by state
(CSS classes), conditional edges dashed. Pure: data in, markup out."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from stepstream.workflows import WorkflowDefinition

BOX_WIDTH, BOX_HEIGHT, GAP_X, GAP_Y = 170, 44, 40, 56


def positions(definition: WorkflowDefinition) -> dict[str, tuple[int, int]]:
    """Top-left corner of each step's box: one row per level, centred."""
    levels = definition.graph.levels
    widest = max(len(level) for level in levels)
    width = widest * (BOX_WIDTH + GAP_X)
    placed = {}
    for row, level in enumerate(levels):
        start = (width - len(level) * (BOX_WIDTH + GAP_X)) // 2
        for column, step_id in enumerate(level):
            placed[step_id] = (
                start + column * (BOX_WIDTH + GAP_X) + GAP_X // 2,
                row * (BOX_HEIGHT + GAP_Y) + 10,
            )
    return placed


def to_svg(
    definition: WorkflowDefinition,
    states: Mapping[str, str],
    durations: Mapping[str, str] | None = None,
) -> str:
    """`states`: each step's state (waiting, queued, running, retrying, completed, failed,
    skipped); the page's script changes the `class` of `g[data-step]` as events arrive.
    `durations`: how long each step's last attempt ran, shown beside its state."""
    durations = durations or {}
    placed = positions(definition)
    width = max(x for x, _ in placed.values()) + BOX_WIDTH + GAP_X
    height = max(y for _, y in placed.values()) + BOX_HEIGHT + 20
    parts = [
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' xmlns="http://www.w3.org/2000/svg" role="img" aria-label="workflow graph">'
    ]
    for step in definition.steps:
        x2, y2 = placed[step.id]
        for dependency in step.depends_on:
            x1, y1 = placed[dependency]
            dashed = ' class="conditional"' if step.when else ""
            condition = f"<title>when: {escape(step.when)}</title>" if step.when else ""
            parts.append(
                f'<line{dashed} x1="{x1 + BOX_WIDTH // 2}" y1="{y1 + BOX_HEIGHT}"'
                f' x2="{x2 + BOX_WIDTH // 2}" y2="{y2}">{condition}</line>'
            )
    for step in definition.steps:
        x, y = placed[step.id]
        state = states.get(step.id, "waiting")
        parts.append(
            f'<g data-step="{escape(step.id)}" class="step {escape(state)}">'
            f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 18}">{escape(step.id)}</text>'
            f'<text class="state" x="{x + 8}" y="{y + 35}">{escape(state)}</text>'
            f'<text class="duration" x="{x + BOX_WIDTH - 8}" y="{y + 35}" text-anchor="end">'
            f"{escape(durations.get(step.id, ''))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
