"""Checkpoints: compact, versioned, and rejected clearly when unreadable."""

from __future__ import annotations

import json

import pytest

from stepstream.workflows import (
    CheckpointError,
    Started,
    StepCompleted,
    new_execution,
    reduce,
    state_from_dict,
    state_to_dict,
)
from tests.unit.workflows.test_execution import MAINTENANCE


def running_state():  # type: ignore[no-untyped-def]
    state = new_execution("exec-9", MAINTENANCE, {"title": "Door"}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=10))
    state, _ = reduce(state, StepCompleted("step-1", 1, {"id": 1}, at_ms=20, started_at_ms=12))
    return state


def test_round_trip_through_json_keeps_everything() -> None:
    state = running_state()
    data = json.loads(json.dumps(state_to_dict(state)))
    assert data["v"] == 1
    assert state_from_dict(data) == state


def test_definitions_are_parsed_once_per_version_with_a_memo() -> None:
    memo: dict = {}
    data = state_to_dict(running_state())
    first = state_from_dict(data, memo)
    second = state_from_dict(data, memo)
    assert first.definition is second.definition
    assert list(memo) == [("maintenance-request", 1)]


def test_a_4_step_checkpoint_stays_small() -> None:
    assert len(json.dumps(state_to_dict(running_state()))) < 1_500


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(v=99),
        lambda d: d.pop("steps"),
        lambda d: d.update(st="exploded"),
        lambda d: d["steps"].update({"step-1": ["weird"]}),
    ],
)
def test_unreadable_checkpoints_raise_a_typed_error(mutate) -> None:  # type: ignore[no-untyped-def]
    data = state_to_dict(running_state())
    mutate(data)
    with pytest.raises(CheckpointError):
        state_from_dict(data)


def test_a_checkpoint_that_names_its_definition_reads_back_with_the_definition_given() -> None:
    from stepstream.workflows.checkpoint import definition_key, definition_ref

    state = running_state()
    data = json.loads(json.dumps(state_to_dict(state, inline_definition=False)))
    assert "def" not in data
    assert definition_ref(data) == (state.definition.id, state.definition.version)
    assert definition_key(*definition_ref(data)) == "#definition/maintenance-request/1"
    memo = {(state.definition.id, state.definition.version): state.definition}
    assert state_from_dict(data, memo) == state
    with pytest.raises(CheckpointError, match="names definition"):
        state_from_dict(data, {})
