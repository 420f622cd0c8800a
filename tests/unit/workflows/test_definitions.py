"""Loading and validating definitions: the product's examples, and every kind of error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepstream.workflows import (
    InvalidDefinition,
    RetryPolicy,
    StepDefinition,
    WorkflowDefinition,
    build_definition,
    definition_to_dict,
    parse_definition,
    plan,
    validated,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "demo" / "examples"
TYPES = {
    "CREATE_MAINTENANCE_REQUEST",
    "ASSIGN_PRIORITY_AI",
    "SEND_NOTIFICATION",
    "ASSIGN_TECHNICIAN",
}


@pytest.mark.parametrize(
    ("name", "fmt"), [("maintenance-request.json", "json"), ("maintenance-request.yaml", "yaml")]
)
def test_the_products_example_plans_in_three_levels_with_its_escalation(
    name: str, fmt: str
) -> None:
    definition = parse_definition((EXAMPLES / name).read_text(), fmt, TYPES)
    assert [list(level) for level in plan(definition).levels] == [
        ["step-1"],
        ["step-2", "step-3"],
        ["step-4", "step-5"],
    ]
    assert definition.step_by_id["step-4"].depends_on == ("step-2", "step-3")
    escalation = definition.step_by_id["step-5"]
    assert escalation.when == 'steps["step-2"].priority == "URGENT"'
    assert definition.conditions["step-5"].steps == {"step-2"}


def test_yaml_policies_are_read() -> None:
    definition = parse_definition((EXAMPLES / "maintenance-request.yaml").read_text())
    assert definition.defaults.retry == RetryPolicy(10, 1_000, 2.0, 15_000, 0.2)
    assert definition.timeout_ms("step-2") == 20_000
    assert definition.timeout_ms("step-1") == 30_000
    assert definition.retry_policy("step-4").max_attempts == 10


def test_definitions_without_depends_on_keep_running_in_list_order() -> None:
    definition = build_definition(
        {
            "id": "legacy",
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "noop", "parallel": True},
                {"id": "c", "type": "noop", "parallel": True},
                {"id": "d", "type": "noop"},
            ],
        }
    )
    assert plan(definition).levels == (("a",), ("b", "c"), ("d",))
    assert definition.step_by_id["d"].depends_on == ("b", "c")


def test_a_step_without_depends_on_is_a_root_once_any_step_declares_dependencies() -> None:
    definition = build_definition(
        {
            "id": "w",
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "noop"},
                {"id": "c", "type": "noop", "dependsOn": ["a"]},
            ],
        }
    )
    assert plan(definition).levels == (("a", "b"), ("c",))


def test_python_api_builds_the_same_definition_as_a_file() -> None:
    from_python = validated(
        WorkflowDefinition(
            "maintenance-request",
            2,
            "Maintenance request",
            (
                StepDefinition("step-1", "CREATE_MAINTENANCE_REQUEST"),
                StepDefinition("step-2", "ASSIGN_PRIORITY_AI", ("step-1",), parallel=True),
                StepDefinition("step-3", "SEND_NOTIFICATION", ("step-1",), parallel=True),
                StepDefinition("step-4", "ASSIGN_TECHNICIAN", ("step-2", "step-3")),
                StepDefinition(
                    "step-5",
                    "SEND_NOTIFICATION",
                    ("step-2",),
                    config={"channel": "sms", "recipient": "on-call-manager"},
                    when='steps["step-2"].priority == "URGENT"',
                ),
            ),
        ),
        TYPES,
    )
    from_file = parse_definition((EXAMPLES / "maintenance-request.json").read_text(), "json")
    assert from_python == from_file


def test_definition_dict_round_trips() -> None:
    definition = parse_definition((EXAMPLES / "maintenance-request.yaml").read_text())
    assert build_definition(json.loads(json.dumps(definition_to_dict(definition)))) == definition


def problems_of(raw: object, types: set[str] | None = None) -> list[str]:
    with pytest.raises(InvalidDefinition) as caught:
        build_definition(raw, types)  # type: ignore[arg-type]
    return [str(problem) for problem in caught.value.problems]


def test_every_problem_is_reported_at_once_with_its_location() -> None:
    problems = problems_of(
        {
            "id": "w",
            "steps": [
                {"id": "a", "type": "noop", "dependsOn": ["c"]},
                {"id": "b", "type": "noop", "dependsOn": ["a", "ghost"]},
                {"id": "c", "type": "noop", "dependsOn": ["b"]},
                {"id": "a", "type": "mystery", "dependsOn": ["a"]},
            ],
        },
        {"noop"},
    )
    assert problems == [
        "steps[3] (a): duplicate step id, first used by steps[0]",
        "steps[3] (a).type: unknown step type 'mystery' (noop)",
        "steps[1] (b).dependsOn[1]: depends on unknown step 'ghost'",
        "steps[3] (a).dependsOn[0]: a step cannot depend on itself",
        "steps: dependency cycle: a -> c -> b -> a (each step depends on the next)",
    ]


def test_an_empty_workflow_is_rejected() -> None:
    assert problems_of({"id": "w", "steps": []}) == ["steps: a workflow needs at least one step"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"steps": [{"id": "a", "type": "noop"}]}, "id: is required"),
        ({"id": "has space", "steps": [{"id": "a", "type": "noop"}]}, "id: malformed workflow id"),
        ({"id": "w", "steps": [{"id": "-a", "type": "noop"}]}, "steps[0].id: malformed step id"),
        ({"id": "w", "steps": [{"id": "a"}]}, "steps[0].type: is required"),
        ({"id": "w", "version": "one", "steps": [{"id": "a", "type": "noop"}]}, "version: must be"),
        ({"id": "w", "version": 0, "steps": [{"id": "a", "type": "noop"}]}, "version: must be"),
        (
            {"id": "w", "steps": [{"id": "a", "type": "noop", "retry": {"maxAttempts": 0}}]},
            "steps[0] (a).retry.maxAttempts: must be 1..100",
        ),
        (
            {"id": "w", "steps": [{"id": "a", "type": "noop", "retry": {"multiplier": "x"}}]},
            "steps[0].retry.multiplier: must be a number",
        ),
        (
            {"id": "w", "steps": [{"id": "a", "type": "noop", "timeoutMs": -5}]},
            "steps[0] (a).timeoutMs: must be a positive number",
        ),
        (
            {"id": "w", "steps": [{"id": "a", "type": "noop", "dependOn": ["b"]}]},
            "steps[0]: unknown field 'dependOn'",
        ),
        (
            {"id": "w", "steps": [{"id": "a", "type": "noop", "dependsOn": "b"}]},
            "steps[0].dependsOn: must be a list of step ids",
        ),
        ({"id": "w", "steps": "a,b"}, "steps: must be a list of steps"),
        (["not", "a", "mapping"], "(root): a definition must be a mapping"),
    ],
)
def test_malformed_fields_are_named(raw: object, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems_of(raw)), problems_of(raw)


def test_syntax_errors_are_problems_too() -> None:
    with pytest.raises(InvalidDefinition, match=r"\(file\): not valid JSON"):
        parse_definition("{ nope", "json")
    with pytest.raises(InvalidDefinition, match=r"\(file\): not valid YAML"):
        parse_definition("steps: [a, b", "yaml")


def test_a_workflow_may_set_its_own_rate_limit() -> None:
    from stepstream.workflows.rate_limit import RateLimit

    definition = build_definition(
        {
            "id": "w",
            "rateLimit": {"points": 3, "windowSeconds": 30},
            "steps": [{"id": "a", "type": "noop"}],
        }
    )
    assert definition.rate_limit == RateLimit(3, 30_000)
    assert build_definition(definition_to_dict(definition)) == definition


def test_an_unknown_over_limit_policy_is_refused() -> None:
    problems = problems_of(
        {
            "id": "w",
            "steps": [{"id": "a", "type": "noop"}],
            "rateLimit": {"points": 3, "windowSeconds": 30, "policy": "queue"},
        }
    )
    assert problems == ["rateLimit.policy: unknown policy 'queue' (reject or defer)"]


@pytest.mark.parametrize("execution_id", ["e-1", "e-2", "0b7c7f3e"])
def test_the_reference_workflow_retries_through_a_minute_long_database_restart(
    execution_id: str,
) -> None:
    from stepstream.workflows.policies import backoff_ms

    definition = parse_definition((EXAMPLES / "maintenance-request.yaml").read_text())
    for step in ("step-1", "step-2", "step-3", "step-4"):
        policy = definition.retry_policy(step)
        waited = sum(
            backoff_ms(policy, execution_id, step, attempt)
            for attempt in range(1, policy.max_attempts)
        )
        assert waited >= 60_000, (step, waited)
