"""Sub-workflows in the pure core: the child's start, its outcome as the step's report,
retries as new children, cancel cascading to running children, and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    CancelChild,
    ChildEnded,
    ExecutionStatus,
    InvalidDefinition,
    Replay,
    ReplayAction,
    StartChild,
    Started,
    StepCompleted,
    StepStatus,
    Tick,
    build_definition,
    definition_to_dict,
    new_execution,
    reduce,
)
from stepstream.workflows.children import call_cycle, child_execution_id
from stepstream.workflows.execution import announce
from stepstream.workflows.explain import explain


def parent(**child: Any) -> Any:
    call = {"id": "assign-block", "version": 2, "input": {"request": "steps.create.id"}}
    call.update(child.pop("workflow", {}))
    return build_definition(
        {
            "id": "parent",
            "steps": [
                {"id": "create", "type": "noop"},
                {"id": "block", "workflow": call, "dependsOn": ["create"], **child},
                {"id": "after", "type": "noop", "dependsOn": ["block"]},
            ],
        }
    )


def started(**child: Any) -> Any:
    state = new_execution("p1", parent(**child), {"who": "ann"}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=1))
    return reduce(state, StepCompleted("create", 1, {"id": 42}, at_ms=2))


def starts(commands: Any) -> list[StartChild]:
    return [c for c in commands if isinstance(c, StartChild)]


def test_the_step_starts_its_child_with_a_deterministic_id_and_its_input() -> None:
    state, commands = started()
    (start,) = starts(commands)
    assert start == StartChild("block", 1, "p1.block.1", "assign-block", 2, {"request": 42})
    assert state.steps["block"].status is StepStatus.RUNNING
    assert starts(announce(state)) == [start]  # announced again: the same child, once


def test_the_childs_outputs_are_the_steps_output() -> None:
    state, _ = started()
    ended = ChildEnded("block", 1, "p1.block.1", "completed", {"assign": {"tech": 7}}, None, 5)
    state, _ = reduce(state, ended)
    assert state.steps["block"].output == {"assign": {"tech": 7}}
    assert state.steps["block"].worker == "workflow:p1.block.1"
    assert state.steps["after"].status is StepStatus.RUNNING


def test_a_failed_child_fails_the_step_and_the_retry_policy_runs_a_new_child() -> None:
    state, _ = started(retry={"maxAttempts": 2, "initialBackoffMs": 10})
    failed = ChildEnded("block", 1, "p1.block.1", "failed", None, "step x broke", 5)
    state, _ = reduce(state, failed)
    assert state.steps["block"].status is StepStatus.RETRYING
    state, commands = reduce(state, Tick(now_ms=10_000))
    assert [s.child_id for s in starts(commands)] == ["p1.block.2"]
    stale = ChildEnded("block", 1, "p1.block.1", "completed", {}, None, 6)
    assert reduce(state, stale)[0] is state  # the first child's late outcome is stale
    state, _ = reduce(state, ChildEnded("block", 2, "p1.block.2", "failed", None, "again", 7))
    assert state.status is ExecutionStatus.FAILED
    assert state.failure is not None
    assert state.failure.error == "ChildFailed: p1.block.2 failed: again"


def test_a_rejected_child_fails_the_step_without_retrying() -> None:
    state, _ = started(retry={"maxAttempts": 3})
    refused = ChildEnded("block", 1, "p1.block.1", "rejected", None, "nesting too deep", 5)
    state, _ = reduce(state, refused)
    assert state.status is ExecutionStatus.FAILED


def test_cancelling_the_parent_cancels_its_running_children_unless_abandoned() -> None:
    state, _ = started()
    cancelled, commands = reduce(state, Replay("op-1", ReplayAction.CANCEL, 5, reason="dup"))
    cancels = [c for c in commands if isinstance(c, CancelChild)]
    assert [c.child_id for c in cancels] == ["p1.block.1"]
    assert "its parent p1 was cancelled: dup" in cancels[0].reason
    again = [c for c in announce(cancelled) if isinstance(c, CancelChild)]
    assert again == cancels  # a redelivered cancel cancels the child again
    state, _ = started(onParentCancel="abandon")
    _, commands = reduce(state, Replay("op-1", ReplayAction.CANCEL, 5))
    assert not [c for c in commands if isinstance(c, CancelChild)]


def test_an_input_that_is_not_an_object_fails_the_step() -> None:
    state, _ = started(workflow={"input": "steps.create.id"})
    assert state.status is ExecutionStatus.FAILED
    assert (
        state.steps["block"].error
        == "ChildInputError: input steps.create.id gave int, not an object"
    )


def test_without_input_the_child_gets_the_parents_input() -> None:
    state = new_execution("p1", parent(), {"who": "ann"}, max_parallel_steps=4)
    definition = definition_to_dict(state.definition)
    del definition["steps"][1]["workflow"]["input"]
    state = new_execution("p1", build_definition(definition), {"who": "ann"}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=1))
    _, commands = reduce(state, StepCompleted("create", 1, {"id": 42}, at_ms=2))
    assert starts(commands)[0].input == {"who": "ann"}


def test_a_long_parent_id_gives_a_child_id_that_still_fits() -> None:
    long_id = "x" * 120
    child = child_execution_id(long_id, "block", 1)
    assert len(child) <= 128 and child == child_execution_id(long_id, "block", 1)
    assert child != child_execution_id(long_id, "block", 2)


@pytest.mark.parametrize(
    ("call", "location", "message"),
    [
        ({"id": "parent"}, "workflow.id", "parent calls itself: parent -> parent"),
        ({"id": "x", "input": 5}, "workflow.input", "must be an expression"),
        ({"id": "x", "input": {"a": "steps.after.x"}}, "workflow.input.a", "reads step 'after'"),
        ({"id": "x", "version": -1}, "workflow.version", "positive integer"),
        ({"version": 1}, "workflow", "the child workflow's 'id'"),
    ],
)
def test_register_refuses_a_bad_sub_workflow_with_its_location(
    call: dict[str, Any], location: str, message: str
) -> None:
    raw = definition_to_dict(parent())
    raw["steps"][1]["workflow"] = call
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw)
    assert any(location in p.location and message in p.message for p in refused.value.problems), (
        refused.value.problems
    )


def test_a_call_cycle_through_other_workflows_is_found_with_its_path() -> None:
    a = build_definition({"id": "a", "steps": [{"id": "s", "workflow": {"id": "b"}}]})
    b = build_definition({"id": "b", "steps": [{"id": "s", "workflow": {"id": "c"}}]})
    c = build_definition({"id": "c", "steps": [{"id": "s", "workflow": {"id": "a"}}]})
    registered = {"b": b, "c": c}

    def lookup(workflow_id: str, version: int) -> Any:
        return registered.get(workflow_id)

    calls = {s.id: s.child for s in a.steps if s.child is not None}
    assert call_cycle("a", calls, lookup) == ["a", "b", "c", "a"]
    registered["c"] = build_definition({"id": "c", "steps": [{"id": "s", "type": "noop"}]})
    assert call_cycle("a", calls, lookup) is None


def test_explain_names_the_child_a_step_waits_for() -> None:
    state, _ = started()
    assert explain(state, now_ms=3)["block"] == (
        "waiting for its child p1.block.1 (workflow assign-block) to end"
    )


@settings(max_examples=80, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(
            st.sampled_from(["completed", "failed", "cancelled", "rejected"]),
            st.integers(min_value=1, max_value=4),  # the attempt the outcome is for
            st.booleans(),  # delivered twice
        ),
        max_size=12,
    ),
    cancel_at=st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
)
def test_no_parent_completes_before_its_child_and_each_child_starts_once(
    outcomes: list[tuple[str, int, bool]], cancel_at: int | None
) -> None:
    state, commands = started(retry={"maxAttempts": 4, "initialBackoffMs": 1, "jitter": 0})
    children = {s.attempt: s.child_id for s in starts(commands)}
    clock = 10
    for n, (status, attempt, twice) in enumerate(outcomes):
        if n == cancel_at:
            state, _ = reduce(state, Replay("op-cancel", ReplayAction.CANCEL, clock))
        child_id = child_execution_id("p1", "block", attempt)
        for _ in range(2 if twice else 1):
            clock += 1
            block = state.steps["block"]
            current = block.status is StepStatus.RUNNING and block.attempt == attempt
            ended = ChildEnded("block", attempt, child_id, status, {"ok": attempt}, "x", clock)
            state, commands = reduce(state, ended)
            for start in starts(commands):
                assert children.setdefault(start.attempt, start.child_id) == start.child_id
            if state.steps["block"].status is StepStatus.COMPLETED and block.status is not (
                StepStatus.COMPLETED
            ):
                assert current and status == "completed", "completed without its child"
                assert state.steps["block"].output == {"ok": attempt}
        clock += 1
        state, commands = reduce(state, Tick(now_ms=clock + 10**6))  # retries due
        for start in starts(commands):
            assert start.attempt not in children, "a child started twice"
            children[start.attempt] = start.child_id
    if state.status is ExecutionStatus.RUNNING and state.steps["block"].status is not (
        StepStatus.COMPLETED
    ):
        block = state.steps["block"]  # the child still runs: its outcome ends the step
        finished = ChildEnded(
            "block", block.attempt, children[block.attempt], "completed", {}, None, clock
        )
        state, _ = reduce(state, finished)
    if state.status is ExecutionStatus.RUNNING:
        state, _ = reduce(state, StepCompleted("after", 1, {}, at_ms=clock + 1))
    assert state.status is not ExecutionStatus.RUNNING, "the execution does not end"
