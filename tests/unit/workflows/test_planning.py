"""Plans: levels, width, the critical path, and the Mermaid/DOT renderings."""

from __future__ import annotations

from stepstream.workflows import (
    StepDefinition,
    WorkflowDefinition,
    describe,
    plan,
    to_dot,
    to_mermaid,
)
from tests.unit.workflows.test_execution import MAINTENANCE


def test_critical_path_follows_the_slowest_branch() -> None:
    assert plan(MAINTENANCE).critical_path == ("step-1", "step-2", "step-4")
    slow_notification = {"step-1": 1, "step-2": 2, "step-3": 5, "step-4": 1}
    result = plan(MAINTENANCE, slow_notification)
    assert result.critical_path == ("step-1", "step-3", "step-4")
    assert result.critical_path_duration == 7
    assert result.total_duration == 9
    assert result.max_width == 2


def test_levels_follow_longest_distance_from_a_root() -> None:
    definition = WorkflowDefinition(
        "w",
        1,
        "w",
        (
            StepDefinition("late", "noop", ("b",)),
            StepDefinition("a", "noop"),
            StepDefinition("b", "noop", ("a",)),
            StepDefinition("shortcut", "noop", ("a", "late")),
            StepDefinition("z", "noop"),
        ),
    )
    assert plan(definition).levels == (("a", "z"), ("b",), ("late",), ("shortcut",))


def test_text_plan_reads_as_a_plan() -> None:
    text = describe(MAINTENANCE)
    assert "4 steps in 3 levels, max width 2" in text
    assert "level 2 (in parallel):" in text
    assert "step-4 [ASSIGN_TECHNICIAN] after step-2, step-3" in text
    assert "critical path: step-1 -> step-2 -> step-4 (3 of 4 units" in text


def test_mermaid_has_every_node_and_edge_and_marks_the_critical_path() -> None:
    text = to_mermaid(MAINTENANCE)
    assert text.startswith("flowchart TD")
    assert 's3["step-4<br/>ASSIGN_TECHNICIAN"]' in text
    assert "s0 ==> s1" in text and "s1 ==> s3" in text  # critical
    assert "s0 --> s2" in text and "s2 --> s3" in text


def test_dot_is_a_digraph_with_quoted_ids() -> None:
    text = to_dot(MAINTENANCE)
    assert text.startswith('digraph "maintenance-request" {') and text.endswith("}")
    assert '"step-1" -> "step-2" [penwidth=2.5];' in text
    assert '"step-3" -> "step-4";' in text
    assert text.count("->") == 4
