"""Properties of the core over random DAGs (hypothesis, 200+ examples each)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    AttemptOutcome,
    EndAttempt,
    ExecutionStatus,
    FailWorkflow,
    StepCompleted,
    StepDefinition,
    StepFailed,
    Tick,
    WorkflowDefinition,
    build_definition,
    reduce,
    state_from_dict,
    state_to_dict,
)
from stepstream.workflows.execution import EmitStepReady, Started
from stepstream.workflows.validation import find_cycles
from tests.unit.workflows.strategies import dags, run_all_succeed

EXAMPLES = settings(max_examples=200, deadline=None)


def chooser(data: st.DataObject):  # type: ignore[no-untyped-def]
    return lambda n: data.draw(st.integers(0, n - 1))


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_every_step_runs_exactly_once_and_never_before_its_dependencies(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    # run_all_succeed asserts the dependency and input invariants at every release.
    run = run_all_succeed(definition, chooser(data), limit=limit)
    assert sorted(run.ready_order) == sorted(step.id for step in definition.steps)
    assert run.state.status is ExecutionStatus.COMPLETED
    assert run.max_running <= limit


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_the_parallel_limit_is_never_exceeded_and_slots_are_used(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    # The driver also checks, after every event, that no step waits while a slot is free.
    run = run_all_succeed(definition, chooser(data), limit=limit)
    assert run.max_running <= limit
    if len(definition.graph.levels[0]) >= limit:
        # The roots alone are ready at the start: they must fill every slot at once.
        assert run.max_running == limit


@EXAMPLES
@given(dags(), st.data())
def test_parallel_disabled_runs_in_topological_order(
    definition: WorkflowDefinition, data: st.DataObject
) -> None:
    run = run_all_succeed(definition, chooser(data), limit=8, parallel=False)
    assert run.max_running == 1
    assert run.ready_order == list(definition.graph.order)


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_any_interleaving_of_completions_ends_in_the_same_state(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    first = run_all_succeed(definition, chooser(data), limit=limit)
    second = run_all_succeed(definition, chooser(data), limit=limit)
    assert first.state == second.state
    assert first.commands[-1] == second.commands[-1]  # the same CompleteWorkflow


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_duplicated_late_and_stale_events_change_nothing(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    clean = run_all_succeed(definition, lambda n: 0, limit=limit)
    noisy_events = []
    for position, event in enumerate(clean.events):
        noisy_events.append(event)
        for _ in range(data.draw(st.integers(0, 2))):
            kind = data.draw(st.sampled_from(["duplicate", "stale", "unknown", "start"]))
            earlier = clean.events[data.draw(st.integers(0, position))]
            if kind == "duplicate":
                noisy_events.append(earlier)
            elif kind == "stale" and isinstance(earlier, StepCompleted):
                noisy_events.append(
                    StepFailed(earlier.step_id, earlier.attempt + 7, "late", True, 0)
                )
                noisy_events.append(StepCompleted(earlier.step_id, earlier.attempt - 1, "old", 0))
            elif kind == "unknown":
                noisy_events.append(StepCompleted("no-such-step", 1, None, 0))
            else:
                noisy_events.append(Started(at_ms=0))
    noisy_events += data.draw(st.lists(st.sampled_from(clean.events), max_size=5))

    final_state, commands = _replay(definition, noisy_events, limit)
    assert final_state == clean.state
    assert commands == clean.commands


def _replay(definition: WorkflowDefinition, events: list[object], limit: int):  # type: ignore[no-untyped-def]
    from stepstream.workflows import new_execution

    state = new_execution("exec-1", definition, {"k": 1}, max_parallel_steps=limit)
    commands: list[object] = []
    for event in events:
        state, emitted = reduce(state, event)  # type: ignore[arg-type]
        commands += emitted
    return state, commands


@EXAMPLES
@given(dags(), st.integers(1, 4), st.data())
def test_a_permanent_failure_ends_the_workflow_and_names_the_step(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    from stepstream.workflows import new_execution

    state, commands = reduce(
        new_execution("e", definition, {}, max_parallel_steps=limit), Started(0)
    )
    running = [c for c in commands if isinstance(c, EmitStepReady)]
    victim = data.draw(st.sampled_from(running))
    state, commands = reduce(state, StepFailed(victim.step_id, victim.attempt, "Boom: x", False, 9))
    assert commands[1:] == (FailWorkflow(victim.step_id, "Boom: x", 9),)
    assert commands[0] == EndAttempt(
        victim.step_id,
        victim.attempt,
        AttemptOutcome.FAILED,
        error="Boom: x",
        finished_at_ms=9,
        released_at_ms=0,  # at the start
    )
    assert state.status is ExecutionStatus.FAILED
    for other in running:
        after, emitted = reduce(state, StepCompleted(other.step_id, other.attempt, None, 10))
        assert emitted == () and after == state
    assert reduce(state, Tick(10**9)) == (state, ())


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_checkpoints_round_trip_at_every_point_of_a_run(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    run = run_all_succeed(definition, chooser(data), limit=limit)
    state, _ = _replay(definition, run.events[: data.draw(st.integers(0, len(run.events)))], limit)
    assert state_from_dict(state_to_dict(state)) == state


@st.composite
def directed_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    count = draw(st.integers(1, 12))
    nodes = [f"n{i}" for i in range(count)]
    edges: dict[str, list[str]] = {}
    for node in nodes:
        targets = draw(st.lists(st.sampled_from(nodes), unique=True, max_size=3))
        edges[node] = [t for t in targets if t != node]
    return edges


def has_cycle_by_kahn(edges: dict[str, list[str]]) -> bool:
    """Reference: repeatedly remove nodes nobody points at; a cycle is what remains."""
    indegree = dict.fromkeys(edges, 0)
    for targets in edges.values():
        for target in targets:
            indegree[target] += 1
    free = [node for node, degree in indegree.items() if degree == 0]
    removed = 0
    while free:
        node = free.pop()
        removed += 1
        for target in edges[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                free.append(target)
    return removed < len(edges)


@settings(max_examples=400, deadline=None)
@given(directed_graphs())
def test_cycle_detection_agrees_with_kahns_algorithm(edges: dict[str, list[str]]) -> None:
    cycles = find_cycles(edges)
    assert bool(cycles) == has_cycle_by_kahn(edges)
    for cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert all(b in edges[a] for a, b in itertools.pairwise(cycle))


@EXAMPLES
@given(directed_graphs())
def test_validation_rejects_exactly_the_cyclic_definitions(edges: dict[str, list[str]]) -> None:
    raw = {
        "id": "g",
        "steps": [{"id": n, "type": "noop", "dependsOn": d} for n, d in edges.items()],
    }
    try:
        build_definition(raw)
        rejected = False
    except ValueError as error:
        rejected = "dependency cycle" in str(error)
    assert rejected == has_cycle_by_kahn(edges)


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    steps = tuple(StepDefinition(f"s{i}", "noop", (f"s{i - 1}",) if i else ()) for i in range(5000))
    edges = {s.id: list(s.depends_on) for s in steps}
    edges["s0"] = ["s4999"]
    assert find_cycles(edges)[0][:2] == ["s0", "s4999"]
