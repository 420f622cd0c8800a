"""Templates in the pure core: typed parameters, expansion at a use site, renamed steps
and expressions, where each step came from, and problems at both locations."""

from __future__ import annotations

from typing import Any

import pytest

from stepstream.workflows import InvalidDefinition, build_definition, describe
from stepstream.workflows.templates import (
    Template,
    expand,
    parse_template,
    rename_steps,
    traced,
)

ASSIGN = {
    "kind": "template",
    "id": "assign-with-escalation",
    "version": 1,
    "params": {
        "skill": {"type": "string", "default": "plumbing"},
        "timeout": {"type": "string", "default": "2h"},
        "attempts": {"type": "integer"},
    },
    "steps": [
        {
            "id": "assign",
            "type": "noop",
            "config": {"skill": "${skill}"},
            "retry": {"maxAttempts": "${attempts}"},
        },
        {
            "id": "accepted",
            "waitFor": {
                "event": "accepted",
                "correlationKey": "steps.assign.id",
                "timeout": "${timeout}",
            },
            "onTimeout": "continue",
            "dependsOn": ["assign"],
        },
        {
            "id": "reassign",
            "type": "noop",
            "dependsOn": ["accepted"],
            "when": 'has(steps["accepted"].timed_out)',
        },
    ],
}


def workflow(**use: Any) -> dict[str, Any]:
    return {
        "id": "maintenance",
        "steps": [
            {"id": "create", "type": "noop"},
            {
                "id": "block",
                "use": {"template": "assign-with-escalation", "version": 1, **use},
                "dependsOn": ["create"],
            },
            {"id": "close", "type": "noop", "dependsOn": ["block"]},
        ],
    }


def templates() -> dict[tuple[str, int], Template]:
    template = parse_template(ASSIGN)
    return {(template.id, 1): template, (template.id, 0): template}


def test_a_use_expands_into_renamed_steps_with_the_parameters() -> None:
    raw = expand(workflow(params={"skill": "electrical", "attempts": 3}), templates())
    definition = build_definition(raw)
    assert [s.id for s in definition.steps] == [
        "create",
        "block.assign",
        "block.accepted",
        "block.reassign",
        "close",
    ]
    steps = definition.step_by_id
    assert steps["block.assign"].config == {"skill": "electrical"}
    assert steps["block.assign"].retry is not None and steps["block.assign"].retry.max_attempts == 3
    assert steps["block.assign"].depends_on == ("create",)  # the use's dependencies
    assert steps["close"].depends_on == ("block.reassign",)  # the block's last steps
    assert steps["block.accepted"].wait_for is not None
    assert steps["block.accepted"].wait_for.correlation_key == "steps['block.assign'].id"
    assert steps["block.accepted"].wait_for.timeout_ms == 7_200_000  # the default, 2h
    assert steps["block.reassign"].when == "has(steps['block.accepted'].timed_out)"
    assert steps["block.accepted"].source == (
        "template assign-with-escalation v1 steps[1] (accepted), used at steps[1] (block)"
    )
    described = describe(definition)
    assert "    block.accepted [event] after block.assign" in described
    assert "      from template assign-with-escalation v1 steps[1] (accepted)" in described


@pytest.mark.parametrize(
    ("params", "location", "message"),
    [
        ({}, "steps[1] (block).use.params.attempts", "is required by template"),
        ({"attempts": "3"}, "steps[1] (block).use.params.attempts", "must be a integer"),
        ({"attempts": 1, "colour": "red"}, "use.params.colour", "has no such parameter"),
    ],
)
def test_parameters_are_checked_at_the_use_site(
    params: dict[str, Any], location: str, message: str
) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        expand(workflow(params=params), templates())
    assert any(location in p.location and message in p.message for p in refused.value.problems), (
        refused.value.problems
    )


def test_an_unknown_template_is_named_at_the_use_site() -> None:
    with pytest.raises(InvalidDefinition) as refused:
        expand(workflow(params={"attempts": 1}, version=7), templates())
    (problem,) = refused.value.problems
    assert problem.location == "steps[1] (block).use"
    assert "template 'assign-with-escalation' version 7 is not registered" in problem.message


def test_a_template_is_checked_at_its_own_locations() -> None:
    broken = {
        **ASSIGN,
        "steps": [*ASSIGN["steps"], {"id": "x", "type": "noop", "dependsOn": ["nope"]}],
    }
    with pytest.raises(InvalidDefinition) as refused:
        parse_template(broken)
    (problem,) = refused.value.problems
    assert problem.location == "template assign-with-escalation v1: steps[3] (x).dependsOn[0]"
    assert "unknown step 'nope'" in problem.message
    bad_param = {**ASSIGN, "params": {"n": {"type": "integer", "default": "two"}}}
    with pytest.raises(InvalidDefinition, match="is not a integer"):
        parse_template(bad_param)


def test_renaming_reads_only_the_templates_own_steps() -> None:
    renamed = rename_steps('steps.a.x == steps["b"].y and steps.outside.z', "blk", {"a", "b"})
    assert renamed == "steps['blk.a'].x == steps['blk.b'].y and steps.outside.z"


def test_a_problem_a_parameter_makes_is_located_in_the_template_and_at_the_use() -> None:
    raw = expand(workflow(params={"attempts": 3, "timeout": "soon"}), templates())
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw)
    (problem,) = traced(refused.value.problems, raw)
    assert problem.location == (
        "steps[2].waitFor.timeout (from template assign-with-escalation v1 steps[1]"
        " (accepted), used at steps[1] (block))"
    )
