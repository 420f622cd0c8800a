"""A step type's declared timeout and retry fill what its steps leave unset, and only
that: a step's own setting wins, and the workflow's defaults still cover the rest."""

from __future__ import annotations

from stepstream.workflows import RetryPolicy, build_definition
from stepstream.workflows.definition import StepTypeDefaults, with_type_defaults

PATIENT = RetryPolicy(max_attempts=5, initial_backoff_ms=200)
DEFINITION = build_definition(
    {
        "id": "typed",
        "version": 1,
        "defaults": {"timeoutMs": 30_000, "retry": {"maxAttempts": 2}},
        "steps": [
            {"id": "plain", "type": "CHARGE"},
            {"id": "own", "type": "CHARGE", "timeoutMs": 1_000, "retry": {"maxAttempts": 9}},
            {"id": "other", "type": "noop", "dependsOn": ["plain", "own"]},
        ],
    }
)


def test_unset_fields_take_the_type_defaults_and_set_ones_stay() -> None:
    typed = with_type_defaults(DEFINITION, {"CHARGE": StepTypeDefaults(5_000, PATIENT)})
    assert (typed.timeout_ms("plain"), typed.retry_policy("plain")) == (5_000, PATIENT)
    assert typed.timeout_ms("own") == 1_000
    assert typed.retry_policy("own").max_attempts == 9
    assert typed.timeout_ms("other") == 30_000  # its type declares nothing
    assert typed.retry_policy("other").max_attempts == 2
    assert typed.graph.order == DEFINITION.graph.order


def test_a_type_may_declare_only_one_of_them() -> None:
    typed = with_type_defaults(DEFINITION, {"CHARGE": StepTypeDefaults(timeout_ms=7_000)})
    assert typed.timeout_ms("plain") == 7_000
    assert typed.retry_policy("plain").max_attempts == 2  # the workflow's default


def test_no_declared_defaults_change_nothing() -> None:
    assert with_type_defaults(DEFINITION, {}) == DEFINITION
