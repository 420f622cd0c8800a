"""Split checkpoints of large executions: a header with the recently changed steps, and
parts with the rest. What an event writes depends on what it changed; and because a
crash keeps a prefix of one partition's records, every prefix of a write must read back
as the state before it or the state after it (never a mix)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    ExecutionState,
    ExecutionStatus,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepFailed,
    StepStatus,
    Tick,
    build_definition,
    new_execution,
    reduce,
    state_from_dict,
)
from stepstream.workflows.checkpoint import (
    DELTA_LIMIT,
    STEPS_PER_PART,
    checkpoint_writes,
    merge_parts,
    part_key,
    split_part_key,
    state_to_dict,
    stored_parts,
)

Store = dict[str, Any]
EXECUTION = "exec-1"


def write(store: Store, writes: list[tuple[int | None, dict[str, Any]]]) -> None:
    for part, value in writes:
        key = EXECUTION if part is None else part_key(EXECUTION, part)
        store[key] = json.loads(json.dumps(value))  # as the table stores it


def read(store: Store, memo: dict[Any, Any]) -> ExecutionState | None:
    header = store.get(EXECUTION)
    if header is None:
        return None
    parts = stored_parts(header, lambda n: store.get(part_key(EXECUTION, n)))
    return state_from_dict(merge_parts(header, parts), memo)


def large_definition(count: int, rng: random.Random) -> Any:
    """A DAG of no-op steps, each after up to two earlier ones."""
    steps = []
    for n in range(count):
        depends = sorted({f"s{rng.randrange(n)}" for _ in range(rng.randint(0, 2))}) if n else []
        steps.append({"id": f"s{n}", "type": "noop", "dependsOn": depends})
    return build_definition({"id": f"big-{count}", "version": 1, "steps": steps})


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(min_value=STEPS_PER_PART + 1, max_value=3 * STEPS_PER_PART),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_prefix_of_every_write_reads_back_whole(count: int, seed: int) -> None:
    # One seed drives the DAG and the order of events (hypothesis shrinks the size and
    # the seed; drawing every choice from it would exceed its input budget).
    rng = random.Random(seed)
    definition = large_definition(count, rng)
    memo = {(definition.id, definition.version): definition}
    state = new_execution(EXECUTION, definition, {}, max_parallel_steps=8)
    state, _ = reduce(state, Started(at_ms=1))
    store: Store = {}
    writes, delta = checkpoint_writes(state, frozenset(), state.steps)
    write(store, writes)
    assert read(store, memo) == state
    clock, replays = 2, 0
    while state.status is ExecutionStatus.RUNNING or replays < 3:
        clock += 1
        if state.status is not ExecutionStatus.RUNNING:
            # An operator re-opens it: retry a failed run, or re-run from a step.
            replays += 1
            if state.status is ExecutionStatus.FAILED:
                event: Any = Replay(f"op-{replays}", ReplayAction.RETRY, at_ms=clock)
            else:
                step_id = rng.choice(sorted(state.steps))
                event = Replay(f"op-{replays}", ReplayAction.RERUN_FROM, clock, step_id)
        else:
            running = sorted(i for i, s in state.steps.items() if s.status is StepStatus.RUNNING)
            roll = rng.randrange(40)
            if not running or roll == 0:
                event = Tick(now_ms=clock + 1_000_000)  # every retry due
            elif roll == 1:
                event = Replay(f"op-resume-{clock}", ReplayAction.RESUME, at_ms=clock)
            else:
                step_id = rng.choice(running)
                attempt = state.steps[step_id].attempt
                if roll < 6:
                    retryable = roll != 2  # now and then a permanent failure
                    event = StepFailed(step_id, attempt, "flaky", retryable, at_ms=clock)
                else:
                    event = StepCompleted(step_id, attempt, {"n": clock}, at_ms=clock)
        new, _ = reduce(state, event)
        changed = [i for i, s in new.steps.items() if s is not state.steps[i]]
        writes, new_delta = checkpoint_writes(new, delta, changed)
        assert len(new_delta) <= DELTA_LIMIT
        for cut in range(len(writes) + 1):  # a crash after `cut` records
            crashed = dict(store)
            write(crashed, writes[:cut])
            assert read(crashed, memo) in (state, new), f"a mix after {cut}/{len(writes)}"
        write(store, writes)
        assert read(store, memo) == new
        state, delta = new, new_delta


def test_an_event_of_a_large_execution_writes_what_it_changed_not_the_whole() -> None:
    steps = [{"id": "root", "type": "noop"}]
    steps += [{"id": f"m{i}", "type": "noop", "dependsOn": ["root"]} for i in range(998)]
    steps.append({"id": "join", "type": "noop", "dependsOn": [f"m{i}" for i in range(998)]})
    definition = build_definition({"id": "fan", "version": 1, "steps": steps})
    state = new_execution(EXECUTION, definition, {}, max_parallel_steps=10)
    state, _ = reduce(state, Started(at_ms=1))
    writes, delta = checkpoint_writes(state, frozenset(), state.steps)
    sizes = []
    for n in range(200):
        new, _ = reduce(state, StepCompleted(f"m{n}" if n else "root", 1, {}, at_ms=n + 2))
        changed = [i for i, s in new.steps.items() if s is not state.steps[i]]
        writes, delta = checkpoint_writes(new, delta, changed)
        sizes.append(sum(len(json.dumps(value)) for _, value in writes))
        state = new
    whole = len(json.dumps(state_to_dict(state, inline_definition=False)))
    assert whole > 30_000
    assert sum(sizes) / len(sizes) < whole / 5, (sum(sizes) / len(sizes), whole)


def test_a_small_execution_is_one_record_with_every_step() -> None:
    definition = build_definition(
        {"id": "small", "version": 1, "steps": [{"id": "a", "type": "noop"}]}
    )
    state = new_execution(EXECUTION, definition, {}, max_parallel_steps=1)
    writes, delta = checkpoint_writes(state, frozenset(), ["a"])
    assert writes == [(None, state_to_dict(state, inline_definition=False))]
    assert delta == frozenset()


def test_part_keys_are_told_from_execution_and_definition_keys() -> None:
    assert split_part_key(part_key("exec-1", 3)) == ("exec-1", 3)
    assert split_part_key("exec-1") is None
    assert split_part_key("#definition/w/1") is None
