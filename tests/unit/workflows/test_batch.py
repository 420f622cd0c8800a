"""The coordinator's batch decision (`workflows.batch`): how a batch is cut never changes
what is decided, and a redelivery after a crash (delivery rule 2) changes nothing and
announces the execution's outstanding commands once per input topic."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    AttemptOutcome,
    EndAttempt,
    Event,
    ExecutionState,
    Started,
    StepCompleted,
    WorkflowDefinition,
    announce,
    new_execution,
)
from stepstream.workflows.batch import BatchDecision, Delivery, apply_batch
from stepstream.workflows.definition import StepDefinition
from tests.unit.workflows.strategies import dags, output_of, run_all_succeed

EXAMPLES = settings(max_examples=300, deadline=None)
TENANT = "acme"


def fresh(definition: WorkflowDefinition) -> ExecutionState:
    return new_execution("e", definition, {"k": 1}, max_parallel_steps=3)


@st.composite
def delivered_runs(draw: st.DrawFn) -> tuple[WorkflowDefinition, list[Delivery]]:
    """A whole run's events as the coordinator consumes them: the start on the executions
    topic ("x"), the reports on step-completed ("c"), offsets rising with gaps (other
    executions' events), and late copies of earlier reports mixed in."""
    definition = draw(dags(max_steps=8))
    run = run_all_succeed(definition, lambda n: draw(st.integers(0, n - 1)))
    events: list[Event] = list(run.events)
    reports = [e for e in events if isinstance(e, StepCompleted)]
    for _ in range(draw(st.integers(0, 3)) if reports else 0):
        copy = draw(st.sampled_from(reports))
        events.insert(draw(st.integers(events.index(copy) + 1, len(events))), copy)
    offsets = {"x": draw(st.integers(0, 5)), "c": draw(st.integers(0, 5))}
    deliveries = []
    for event in events:
        source = "x" if isinstance(event, Started) else "c"
        deliveries.append(
            Delivery(source, offsets[source], event, TENANT if source == "x" else None)
        )
        offsets[source] += draw(st.integers(1, 3))
    return definition, deliveries


def cuts(draw: st.DrawFn, deliveries: Sequence[Delivery]) -> list[list[Delivery]]:
    points = sorted(draw(st.sets(st.integers(1, max(1, len(deliveries) - 1)), max_size=5)))
    bounds = [0, *points, len(deliveries)]
    return [list(deliveries[a:b]) for a, b in itertools.pairwise(bounds) if a < b]


def apply_in_batches(
    state: ExecutionState,
    applied: dict[str, int] | None,
    batches: Sequence[Sequence[Delivery]],
) -> tuple[ExecutionState, dict[str, int] | None, list[BatchDecision]]:
    decisions = []
    for batch in batches:
        decision = apply_batch(state, TENANT, applied, batch)
        decisions.append(decision)
        if decision.write:  # what the coordinator writes, it reads back next batch
            state, applied = decision.state, decision.applied
    return state, applied, decisions


@EXAMPLES
@given(delivered_runs(), st.data())
def test_how_a_batch_is_cut_changes_nothing_decided(
    run: tuple[WorkflowDefinition, list[Delivery]], data: st.DataObject
) -> None:
    definition, deliveries = run
    whole = apply_batch(fresh(definition), TENANT, None, deliveries)
    state, applied, decisions = apply_in_batches(
        fresh(definition), None, cuts(data.draw, deliveries)
    )
    assert state == whole.state and applied == whole.applied
    emitted = [e.command for d in decisions for e in d.emissions]
    assert emitted == [e.command for e in whole.emissions]
    assert whole.state.status.value == "completed"


@EXAMPLES
@given(delivered_runs())
def test_the_offsets_written_are_those_of_the_last_events_that_changed_the_state(
    run: tuple[WorkflowDefinition, list[Delivery]],
) -> None:
    definition, deliveries = run
    decision = apply_batch(fresh(definition), TENANT, None, deliveries)
    changed = [deliveries[change.cause] for change in decision.changes]
    expected: dict[str, int] = {}
    for delivery in changed:
        expected[delivery.source] = delivery.offset
    assert decision.applied == expected
    completed = [d.event.step_id for d in changed if isinstance(d.event, StepCompleted)]
    assert sorted(completed) == sorted(s.id for s in definition.steps)  # late copies: no-ops


@EXAMPLES
@given(delivered_runs(), st.data())
def test_a_redelivery_after_a_crash_changes_nothing_and_announces_once_per_topic(
    run: tuple[WorkflowDefinition, list[Delivery]], data: st.DataObject
) -> None:
    """The checkpoint of the first `crash` events was written, their outputs lost; the
    consumer resumes each topic from any committed offset at or before what was applied,
    so it sees a tail of what was applied again, then what is new."""
    definition, deliveries = run
    crash = data.draw(st.integers(1, len(deliveries)), label="crash")
    done, rest = deliveries[:crash], deliveries[crash:]
    state, applied, _ = apply_in_batches(fresh(definition), None, cuts(data.draw, done))
    assert applied is not None
    resume = {
        source: data.draw(st.integers(0, offset + 1), label=f"committed {source}")
        for source, offset in applied.items()
    }
    again = [d for d in done if d.offset >= resume.get(d.source, 0)]

    redelivered = apply_batch(state, TENANT, applied, again)

    assert not redelivered.write and redelivered.state is state and not redelivered.changes
    announced_topics = {d.source for d in again if d.offset == applied.get(d.source)}
    assert [e.command for e in redelivered.emissions] == list(announce(state)) * len(
        announced_topics
    )
    finished, _, _ = apply_in_batches(state, applied, cuts(data.draw, rest))
    uninterrupted = apply_batch(fresh(definition), TENANT, None, deliveries).state
    assert finished == uninterrupted


def test_a_start_of_another_tenant_with_a_taken_id_is_refused_and_changes_nothing() -> None:
    definition = WorkflowDefinition("w", 1, "w", (StepDefinition("a", "noop", ()),))
    first = apply_batch(fresh(definition), TENANT, None, [Delivery("x", 0, Started(0), TENANT)])
    assert first.applied == {"x": 0}
    other = apply_batch(first.state, TENANT, first.applied, [Delivery("x", 1, Started(5), "rival")])
    assert other.foreign_starts == [0] and not other.write and not other.emissions


def test_a_report_of_an_attempt_that_is_not_current_is_an_ignored_decision() -> None:
    definition = WorkflowDefinition("w", 1, "w", (StepDefinition("a", "noop", ()),))
    started = apply_batch(fresh(definition), TENANT, None, [Delivery("x", 0, Started(0), TENANT)])
    stale = StepCompleted("a", 7, output_of("a"), at_ms=1, worker="w9")
    decision = apply_batch(started.state, TENANT, started.applied, [Delivery("c", 0, stale)])
    ignored = [e.command for e in decision.ignored]
    assert ignored == [
        EndAttempt(
            "a",
            7,
            AttemptOutcome.IGNORED,
            error="not the current attempt (current 1)",
            finished_at_ms=1,
            worker="w9",
            report="completed",
        )
    ]
    assert not decision.write and [e.command for e in decision.emissions] == ignored
