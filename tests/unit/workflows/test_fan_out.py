"""Dynamic fan-out (`forEach`) in the pure core: the definition, the reducer, the
checkpoint, and properties over random lists, report orders, duplicates, failures
under each policy and cancels."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.streams.events import from_json, to_json_bytes
from stepstream.workflows import (
    ExecutionState,
    ExecutionStatus,
    Heartbeat,
    InvalidDefinition,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepFailed,
    StepStatus,
    Tick,
    build_definition,
    definition_to_dict,
    new_execution,
    reduce,
    state_from_dict,
)
from stepstream.workflows.checkpoint import (
    DELTA_LIMIT,
    checkpoint_writes,
    merge_parts,
    part_key,
    stored_parts,
)
from stepstream.workflows.execution import EmitStepReady, EndAttempt, announce
from stepstream.workflows.explain import explain
from stepstream.workflows.planning import describe
from stepstream.workflows.rendering import to_mermaid
from stepstream.workflows.stalls import waiting_on
from stepstream.workflows.state import changed_steps

POLICIES: list[Any] = ["failFast", "continue", {"tolerate": "30%"}]


def fan_definition(**fields: Any) -> Any:
    """read -> notify (forEach over read's tenants) -> report."""
    notify = {"id": "notify", "type": "noop", "forEach": "steps.read.tenants", "as": "tenant"}
    notify.update(dependsOn=["read"], **fields)
    return build_definition(
        {
            "id": "fanning",
            "version": 1,
            "steps": [
                {"id": "read", "type": "noop"},
                notify,
                {"id": "report", "type": "noop", "dependsOn": ["notify"]},
            ],
        }
    )


def started(items: list[Any], slots: int = 10, cap: int = 10_000, **fields: Any) -> Any:
    """The execution with `read` completed with `items`: (state, commands)."""
    state = new_execution(
        "e1", fan_definition(**fields), {}, max_parallel_steps=slots, max_foreach_items=cap
    )
    state, _ = reduce(state, Started(at_ms=1))
    return reduce(state, StepCompleted("read", 1, {"tenants": items}, at_ms=2))


def ready(commands: Any) -> list[EmitStepReady]:
    return [c for c in commands if isinstance(c, EmitStepReady)]


def test_each_item_runs_as_an_instance_and_the_output_keeps_item_order() -> None:
    state, commands = started(["a", "b", "c"])
    sent = ready(commands)
    assert [c.step_id for c in sent] == ["notify[0]", "notify[1]", "notify[2]"]
    assert [(c.inputs["item"], c.inputs["tenant"], c.inputs["index"]) for c in sent] == [
        ("a", "a", 0),
        ("b", "b", 1),
        ("c", "c", 2),
    ]
    for index in (2, 0, 1):  # reports in another order than the items
        state, commands = reduce(state, StepCompleted(f"notify[{index}]", 1, index * 10, 10))
    assert state.steps["notify"].output == [0, 10, 20]
    assert [c.step_id for c in ready(commands)] == ["report"]
    assert ready(commands)[0].inputs["steps"]["notify"] == [0, 10, 20]


def test_an_empty_list_completes_with_an_empty_list_and_dependents_run() -> None:
    state, commands = started([])
    assert state.steps["notify"].status is StepStatus.COMPLETED
    assert state.steps["notify"].output == []
    assert [c.step_id for c in ready(commands)] == ["report"]
    state, _ = reduce(state, StepCompleted("report", 1, {}, at_ms=3))
    assert state.status is ExecutionStatus.COMPLETED


def test_a_list_over_the_cap_fails_the_step_naming_the_cap() -> None:
    state, _ = started(list(range(6)), cap=5)
    assert state.status is ExecutionStatus.FAILED
    error = state.steps["notify"].error
    assert error is not None and "6 items, over the cap of 5" in error
    assert "WORKFLOW_MAX_FOREACH_ITEMS" in error


def test_a_value_that_is_not_a_list_fails_the_step_with_what_it_was() -> None:
    state, _ = started({"a": 1})  # type: ignore[arg-type]
    assert state.status is ExecutionStatus.FAILED
    assert state.steps["notify"].error == (
        "ForEachError: forEach steps.read.tenants gave dict, not a list"
    )


def test_instances_are_bounded_by_max_parallel_and_by_the_execution_slots() -> None:
    state, commands = started(list(range(10)), slots=4, maxParallel=3)
    assert len(ready(commands)) == 3  # maxParallel
    state, commands = started(list(range(10)), slots=2, maxParallel=3)
    assert len(ready(commands)) == 2  # WORKFLOW_MAX_PARALLEL_STEPS
    state, commands = reduce(state, StepCompleted("notify[1]", 1, None, at_ms=3))
    assert [c.step_id for c in ready(commands)] == ["notify[2]"]
    assert state.outstanding == 2


def test_an_instance_retries_on_its_own_with_its_own_attempts() -> None:
    state, _ = started(["a", "b"], retry={"maxAttempts": 2, "initialBackoffMs": 10})
    state, _ = reduce(state, StepFailed("notify[1]", 1, "flaky", True, at_ms=3))
    assert state.steps["notify[1]"].status is StepStatus.RETRYING
    state, commands = reduce(state, Tick(now_ms=10_000, step_id="notify[1]"))
    assert [(c.step_id, c.attempt) for c in ready(commands)] == [("notify[1]", 2)]
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=4))
    state, _ = reduce(state, StepCompleted("notify[1]", 1, "stale", at_ms=5))  # fenced
    assert state.steps["notify"].status is StepStatus.RUNNING
    state, _ = reduce(state, StepCompleted("notify[1]", 2, "B", at_ms=6))
    assert state.steps["notify"].output == ["A", "B"]


def test_fail_fast_fails_the_step_and_the_workflow_at_the_first_failure() -> None:
    state, _ = started(["a", "b", "c"])
    state, _ = reduce(state, StepFailed("notify[1]", 1, "no address", False, at_ms=3))
    assert state.status is ExecutionStatus.FAILED
    assert state.failure is not None and state.failure.step_id == "notify"
    assert state.failure.error == "an item failed: no address"


def test_continue_keeps_each_failure_in_its_place_and_completes() -> None:
    state, _ = started(["a", "b", "c"], failurePolicy="continue")
    state, _ = reduce(state, StepFailed("notify[1]", 1, "no address", False, at_ms=3))
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=4))
    state, _ = reduce(state, StepCompleted("notify[2]", 1, "C", at_ms=5))
    assert state.steps["notify"].output == ["A", {"error": "no address"}, "C"]
    assert state.steps["report"].status is StepStatus.RUNNING


def test_tolerate_fails_only_past_its_share() -> None:
    state, _ = started(list(range(10)), failurePolicy={"tolerate": "20%"})
    for index in (0, 1):  # 2 of 10: within 20%
        state, _ = reduce(state, StepFailed(f"notify[{index}]", 1, "x", False, at_ms=3))
    assert state.steps["notify"].status is StepStatus.RUNNING
    state, _ = reduce(state, StepFailed("notify[2]", 1, "x", False, at_ms=4))
    assert state.status is ExecutionStatus.FAILED
    assert "3 of 10 items failed, over the 20% tolerated" in (state.steps["notify"].error or "")


def test_cancel_stops_the_fan_out_and_late_reports_change_nothing() -> None:
    state, _ = started(["a", "b", "c"], maxParallel=1)
    state, commands = reduce(state, Replay("op-1", ReplayAction.CANCEL, at_ms=3))
    assert state.status is ExecutionStatus.CANCELLED
    after, commands = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=4))
    assert after is state and commands == ()


def test_rerun_from_fans_out_again_with_new_attempts_and_fences_the_old_ones() -> None:
    state, _ = started(["a", "b"], maxParallel=1)
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=3))
    state, _ = reduce(state, StepCompleted("notify[1]", 1, "B", at_ms=4))
    state, _ = reduce(state, StepCompleted("report", 1, {}, at_ms=5))
    assert state.status is ExecutionStatus.COMPLETED
    state, commands = reduce(state, Replay("op-1", ReplayAction.RERUN_FROM, 6, "notify"))
    assert [(c.step_id, c.attempt) for c in ready(commands)] == [("notify[0]", 2)]
    after, _ = reduce(state, StepCompleted("notify[0]", 1, "old", at_ms=7))
    assert after is state  # the earlier run's attempt is stale
    state, _ = reduce(state, StepCompleted("notify[0]", 2, "A2", at_ms=8))
    state, commands = reduce(state, StepCompleted("notify[1]", 2, "B2", at_ms=9))
    assert state.steps["notify"].output == ["A2", "B2"]


def test_an_announcement_sends_the_running_instances_again_at_their_attempts() -> None:
    state, _ = started(["a", "b", "c"], maxParallel=2)
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=3))
    again = [(c.step_id, c.attempt) for c in ready(announce(state))]
    assert again == [("notify[1]", 1), ("notify[2]", 1)]


def test_explain_and_stalls_see_the_instances_not_the_fan_out() -> None:
    state, _ = started(["a", "b", "c"], maxParallel=2)
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=3))
    assert explain(state, now_ms=4)["notify"] == (
        "fanned out over steps.read.tenants: 1 of 3 items done, 2 running"
    )
    assert [w.step_id for w in waiting_on(state, margin_ms=0)] == ["notify[1]", "notify[2]"]


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"forEach": 3}, "steps[1].forEach", "must be an expression"),
        ({"forEach": "steps.report.x"}, "steps[1] (notify).forEach", "reads step 'report'"),
        ({"forEach": "steps.read.x", "maxParallel": 0}, "steps[1].maxParallel", "positive"),
        ({"forEach": "steps.read.x", "failurePolicy": "often"}, "failurePolicy", "tolerate"),
        ({"forEach": "steps.read.x", "as": "input"}, "steps[1].as", "other than input"),
        ({"maxParallel": 2}, "steps[1].maxParallel", "only a step with 'forEach'"),
        ({"forEach": "steps.read.x", "wait": {"for": "1s"}}, "forEach", "has no items"),
    ],
)
def test_register_refuses_a_bad_fan_out_with_its_location(
    fields: dict[str, Any], location: str, message: str
) -> None:
    notify = {"id": "notify", "type": "noop", "dependsOn": ["read"], **fields}
    if "wait" in fields:
        del notify["type"]
    raw = {
        "id": "bad",
        "steps": [
            {"id": "read", "type": "noop"},
            notify,
            {"id": "report", "type": "noop", "dependsOn": ["notify"]},
        ],
    }
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw)
    assert any(location in p.location and message in p.message for p in refused.value.problems), (
        refused.value.problems
    )


def test_a_fan_out_definition_reads_back_as_written() -> None:
    definition = fan_definition(maxParallel=4, failurePolicy={"tolerate": "12.5%"})
    again = build_definition(json.loads(json.dumps(definition_to_dict(definition))))
    assert again.step_by_id["notify"] == definition.step_by_id["notify"]


# Properties ----------------------------------------------------------------------------


class Run:
    """Drives one execution with random reports, checking each transition."""

    def __init__(self, state: ExecutionState, rng: random.Random) -> None:
        self.state, self.rng = state, rng
        self.sent: set[tuple[str, int]] = set()
        self.store: dict[str, Any] = {}
        self.delta: frozenset[str] = frozenset()

    def apply(self, event: Any) -> tuple[Any, ...]:
        before = self.state
        self.state, commands = reduce(before, event)
        for command in ready(commands):
            released = (command.step_id, command.attempt)
            assert released not in self.sent, f"{released} released twice"
            self.sent.add(released)
        for end in commands:
            if isinstance(end, EndAttempt) and end.step_id == "notify" and end.output is not None:
                fan = self.state.steps["notify"].fan
                assert fan is not None and fan.done, "the fan-out completed before its items"
        self.check_checkpoint(before)
        return commands

    def check_checkpoint(self, before: ExecutionState) -> None:
        changed = [i for i, s in self.state.steps.items() if s is not before.steps.get(i)]
        tracked = changed_steps(before.steps, self.state.steps)  # what the worker uses
        assert set(changed) <= set(tracked), "a changed step the transition did not track"
        if not self.store:  # a new execution's first write: all of it (Checkpoints.write)
            changed = list(self.state.steps)
        writes, self.delta = checkpoint_writes(self.state, self.delta, changed)
        assert len(self.delta) <= DELTA_LIMIT
        for cut in range(len(writes)):  # a crash after `cut` records reads back whole
            crashed = dict(self.store)
            self.write(crashed, writes[:cut])
            if "e1" in crashed:
                assert self.read(crashed) in (before, self.state), f"a mix at {cut}"
        self.write(self.store, writes)
        assert self.read(self.store) == self.state

    @staticmethod
    def write(store: dict[str, Any], writes: Any) -> None:
        for part, value in writes:
            # As the table stores it: the worker's JSON encoder, not the standard library's.
            store["e1" if part is None else part_key("e1", part)] = from_json(to_json_bytes(value))

    def read(self, store: dict[str, Any]) -> ExecutionState:
        header = store["e1"]
        parts = stored_parts(header, lambda n: store.get(part_key("e1", n)))
        memo = {("fanning", 1): self.state.definition}
        return state_from_dict(merge_parts(header, parts), memo)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=150),
    policy=st.sampled_from(POLICIES),
    max_parallel=st.sampled_from([None, 1, 7]),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_fan_out_ends_with_one_entry_per_item_in_item_order(
    count: int, policy: Any, max_parallel: int | None, seed: int
) -> None:
    rng = random.Random(seed)
    fields: dict[str, Any] = {"failurePolicy": policy, "retry": {"maxAttempts": 2}}
    if max_parallel is not None:
        fields["maxParallel"] = max_parallel
    state = new_execution("e1", fan_definition(**fields), {}, max_parallel_steps=8)
    run = Run(state, rng)
    run.apply(Started(at_ms=1))
    items = [f"t{n}" for n in range(count)]
    run.apply(StepCompleted("read", 1, {"tenants": items}, at_ms=2))
    clock, reported = 3, []
    cancel_at = rng.randrange(4 * count + 10) if rng.random() < 0.2 else None
    while run.state.status is ExecutionStatus.RUNNING:
        clock += 1
        running = [i for i, s in run.state.steps.items() if s.status is StepStatus.RUNNING]
        running = [i for i in running if "[" in i or i == "report"]
        roll = rng.randrange(20)
        if clock == cancel_at:
            event: Any = Replay("op-cancel", ReplayAction.CANCEL, at_ms=clock)
        elif reported and roll == 0:
            event = rng.choice(reported)  # a duplicate, delivered again
        elif not running or roll == 1:
            retrying = [i for i, s in run.state.steps.items() if s.status is StepStatus.RETRYING]
            event = Tick(now_ms=clock + 10**9, step_id=rng.choice(retrying or ["read"]))
        else:
            step_id = rng.choice(running)
            attempt = run.state.steps[step_id].attempt
            if roll < 5 and step_id != "report":
                event = StepFailed(step_id, attempt, f"fail {step_id}", roll != 2, at_ms=clock)
            else:
                event = StepCompleted(step_id, attempt, f"out {step_id}", at_ms=clock)
            reported.append(event)
        run.apply(event)
        assert clock < 50 * (count + 10), "the execution does not end"
    state = run.state
    assert state.status in (
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
    )
    notify = state.steps["notify"]
    if notify.status is StepStatus.COMPLETED:
        assert len(notify.output) == count
        for index, entry in enumerate(notify.output):
            instance = state.steps[f"notify[{index}]"]
            if instance.status is StepStatus.COMPLETED:
                assert entry == f"out notify[{index}]"
            else:
                assert policy != "failFast" and entry == {"error": instance.error}


def test_a_fan_out_of_queue_steps_times_out_by_its_instances_never_as_a_whole() -> None:
    state, _ = started(["a"], queue="billing", timeoutMs=1000)
    for at in (800, 1600, 2400):  # the instance's worker is alive: its deadline moves on
        state, _ = reduce(state, Heartbeat("notify[0]", 1, at_ms=at))
        state, _ = reduce(state, Tick(now_ms=at + 500))
    assert state.steps["notify"].status is StepStatus.RUNNING
    state, _ = reduce(state, StepCompleted("notify[0]", 1, "A", at_ms=3000))
    assert state.steps["notify"].output == ["A"]


def test_a_silent_instance_of_a_queue_fan_out_times_out_and_is_retried() -> None:
    state, _ = started(["a"], queue="billing", timeoutMs=1000, retry={"maxAttempts": 2})
    state, _ = reduce(state, Tick(now_ms=5000, step_id="notify[0]"))
    assert state.steps["notify[0]"].status is StepStatus.RETRYING
    assert state.steps["notify[0]"].timed_out


def test_plan_draws_a_fan_out_as_one_node_with_its_items() -> None:
    definition = fan_definition()
    assert 's1["notify<br/>noop<br/>for each of steps.read.tenants"]' in to_mermaid(definition)
    assert "notify [noop] after read, for each of steps.read.tenants" in describe(definition)
