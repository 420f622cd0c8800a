"""The checks every start request passes before the engine takes it."""

from __future__ import annotations

import pytest

from stepstream.workflows.requests import MAX_ID_LENGTH, Refusal, check_start


def check(execution_id: str = "e-1", input_json: str = "{}", **ids: str) -> Refusal | None:
    fields = {"workflow_id": "w", "tenant_id": "t", "user_id": "u", **ids}
    return check_start(execution_id, input_json=input_json, max_input_bytes=100, **fields)


def test_a_well_formed_request_passes() -> None:
    assert check("0b7c7f3e-1f6a-4f8e-9c7d-2a1b3c4d5e6f") is None
    assert check("tenant-a:order.42@eu") is None


@pytest.mark.parametrize(
    ("execution_id", "problem"),
    [
        ("", "execution_id is empty"),
        ("a/b", "execution_id 'a/b' may hold only"),
        ("-leading", "execution_id '-leading' may hold only"),
        ("x" * (MAX_ID_LENGTH + 1), f"execution_id is {MAX_ID_LENGTH + 1} characters"),
    ],
)
def test_bad_execution_ids_are_refused_naming_the_field(execution_id: str, problem: str) -> None:
    refusal = check(execution_id)
    assert refusal is not None and refusal.code == "invalid_request"
    assert refusal.reason.startswith(problem)


@pytest.mark.parametrize("field", ["workflow_id", "tenant_id", "user_id"])
def test_every_required_id_is_checked(field: str) -> None:
    refusal = check(**{field: ""})
    assert refusal == Refusal("invalid_request", f"{field} is empty")


def test_an_input_over_the_limit_is_refused_with_the_limit() -> None:
    refusal = check(input_json='{"k":"' + "é" * 50 + '"}')  # 108 bytes, 58 characters
    assert refusal is not None and refusal.code == "input_too_large"
    assert refusal.limit == "100 bytes"
    assert refusal.reason == "input is 108 bytes; the limit is 100 (WORKFLOW_MAX_INPUT_BYTES)"
