"""Delivery rule 2 in the core: what a redelivered input makes the coordinator emit again
(`announce`) is enough to finish an execution whose earlier outputs were lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    AttemptOutcome,
    CompleteWorkflow,
    EmitStepReady,
    EndAttempt,
    ExecutionStatus,
    FailWorkflow,
    ScheduleRetry,
    Started,
    StepCompleted,
    StepFailed,
    Tick,
    WorkflowDefinition,
    announce,
    new_execution,
    reduce,
)
from stepstream.workflows.definition import RetryPolicy, StepDefinition
from tests.unit.workflows.strategies import dags, output_of, run_all_succeed

EXAMPLES = settings(max_examples=500, deadline=None)


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_an_execution_whose_outputs_are_lost_finishes_on_what_redelivery_announces(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    """A coordinator that crashes after writing its checkpoint and before its outputs
    are delivered sees the input again; it emits `announce(state)` instead of the lost
    outputs. Whatever is lost, and whenever, every step completes exactly once and the
    outcome is delivered."""
    state = new_execution("e", definition, {"k": 1}, max_parallel_steps=limit)
    delivered: list[EmitStepReady] = []
    accepted: list[str] = []
    outcome: list[object] = []

    def deliver(commands: tuple[object, ...]) -> None:
        for command in commands:
            if isinstance(command, EmitStepReady):
                delivered.append(command)
            elif isinstance(command, CompleteWorkflow):
                outcome.append(command)

    def apply(event: object) -> None:
        nonlocal state
        before = state
        state, commands = reduce(state, event)  # type: ignore[arg-type]
        if state is not before:
            accepted.append(getattr(event, "step_id", "start"))
        if data.draw(st.booleans(), label="outputs lost"):
            deliver(announce(state))  # the redelivered input finds its effect: announce
        else:
            deliver(commands)

    apply(Started(at_ms=0))
    while delivered:
        ready = delivered.pop(data.draw(st.integers(0, len(delivered) - 1), label="next"))
        apply(StepCompleted(ready.step_id, ready.attempt, output_of(ready.step_id), at_ms=1))

    assert state.status is ExecutionStatus.COMPLETED
    assert sorted(accepted) == sorted(["start", *(s.id for s in definition.steps)])
    assert outcome and outcome[0] == CompleteWorkflow(
        {s: output_of(s) for s in definition.graph.order}, 1
    )


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_announce_names_exactly_the_running_steps_with_their_first_inputs(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    run = run_all_succeed(definition, lambda n: data.draw(st.integers(0, n - 1)), limit=limit)
    state = new_execution("exec-1", definition, {"k": 1}, max_parallel_steps=limit)
    first_ready = {}
    for event in run.events[: data.draw(st.integers(1, len(run.events)))]:
        state, commands = reduce(state, event)
        first_ready.update({c.step_id: c for c in commands if isinstance(c, EmitStepReady)})
    announced = [c for c in announce(state) if not isinstance(c, EndAttempt)]
    ends = [c for c in announce(state) if isinstance(c, EndAttempt)]
    completed = {s for s, step in state.steps.items() if step.status == "completed"}
    assert {c.step_id for c in ends} == completed  # each finished step's decision, again
    if state.status is ExecutionStatus.COMPLETED:
        assert announced == [run.commands[-1]]
        return
    running = {s for s, step in state.steps.items() if step.status == "running"}
    assert {c.step_id for c in announced} == running
    assert all(c == first_ready[c.step_id] for c in announced)  # same attempt, same inputs


FAILED = AttemptOutcome.FAILED


def test_announce_repeats_a_failure_and_a_pending_retry() -> None:
    retry = RetryPolicy(max_attempts=2, initial_backoff_ms=100, multiplier=1, jitter=0.0)
    definition = WorkflowDefinition("w", 1, "w", (StepDefinition("only", "noop", (), retry=retry),))
    state = new_execution("e", definition, {}, max_parallel_steps=1)
    state, _ = reduce(state, Started(at_ms=0))
    state, commands = reduce(state, StepFailed("only", 1, "boom", True, at_ms=10))
    failed = EndAttempt(
        "only", 1, FAILED, error="boom", will_retry=True, finished_at_ms=10, released_at_ms=0
    )
    assert announce(state) == commands == (failed, ScheduleRetry("only", 2, 110))
    state, _ = reduce(state, StepFailed("only", 1, "late copy", True, at_ms=20))
    assert announce(state) == (failed, ScheduleRetry("only", 2, 110))
    state, _ = reduce(state, Tick(now_ms=200))
    state, commands = reduce(state, StepFailed("only", 2, "boom again", True, at_ms=300))
    final = EndAttempt(
        "only", 2, FAILED, error="boom again", finished_at_ms=300, released_at_ms=200
    )
    assert announce(state) == commands == (final, FailWorkflow("only", "boom again", 300))
