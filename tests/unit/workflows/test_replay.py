"""Operator requests on an execution: resume, retry, rerun from a step."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    CompleteWorkflow,
    ExecutionStatus,
    Replay,
    ReplayAction,
    RetryPolicy,
    StepCompleted,
    StepDefinition,
    StepFailed,
    StepStatus,
    Tick,
    WorkflowDefinition,
    new_execution,
    reduce,
    replay_applies,
    state_from_dict,
    state_to_dict,
)
from tests.unit.workflows.strategies import Run, dags, drive, output_of, run_all_succeed
from tests.unit.workflows.test_execution import ready_steps, started

RESUME, RETRY, RERUN = ReplayAction.RESUME, ReplayAction.RETRY, ReplayAction.RERUN_FROM


def completed_run():  # type: ignore[no-untyped-def]
    state, _ = started()
    for step in ("step-1", "step-2", "step-3", "step-4"):
        state, _ = reduce(state, StepCompleted(step, 1, output_of(step), at_ms=2_000))
    assert state.status is ExecutionStatus.COMPLETED
    return state


def test_retry_gives_the_failed_step_a_new_attempt_and_the_workflow_carries_on() -> None:
    state, _ = started()
    state, _ = reduce(state, StepCompleted("step-1", 1, {"id": 7}, at_ms=1_010))
    state, _ = reduce(state, StepFailed("step-2", 1, "NoTechnician: none free", False, 1_020))
    assert state.status is ExecutionStatus.FAILED  # step-3 was still running: fail fast

    state, commands = reduce(state, Replay("op-1", RETRY, at_ms=5_000))
    assert state.status is ExecutionStatus.RUNNING and state.failure is None
    # step-2 runs again as attempt 2; step-3's completion was dropped, so it is re-sent
    # at its own attempt (its handler's idempotency key is unchanged).
    assert sorted(ready_steps(commands)) == [("step-2", 2), ("step-3", 1)]
    assert state.generation == 1

    state, _ = reduce(state, StepCompleted("step-2", 2, {"priority": "HIGH"}, at_ms=5_010))
    state, commands = reduce(state, StepCompleted("step-3", 1, {"sent": True}, at_ms=5_020))
    assert ready_steps(commands) == [("step-4", 1)]
    state, commands = reduce(state, StepCompleted("step-4", 1, {"tech": 3}, at_ms=5_030))
    assert state.status is ExecutionStatus.COMPLETED
    assert isinstance(commands[1], CompleteWorkflow)


def test_a_retried_step_gets_its_retry_budget_again() -> None:
    flaky = WorkflowDefinition(
        "flaky", 1, "flaky", (StepDefinition("only", "x", retry=RetryPolicy(max_attempts=2)),)
    )
    state, _ = started(flaky)
    state, _ = reduce(state, StepFailed("only", 1, "E: 1", True, 10))
    state, _ = reduce(state, Tick(now_ms=20_000))  # the retry is due: attempt 2 runs
    state, _ = reduce(state, StepFailed("only", 2, "E: 2", True, 20_010))
    assert state.status is ExecutionStatus.FAILED  # two attempts, the policy's maximum

    state, commands = reduce(state, Replay("op-1", RETRY, at_ms=30_000))
    assert ready_steps(commands) == [("only", 3)]
    state, commands = reduce(state, StepFailed("only", 3, "E: 3", True, 30_010))
    assert state.steps["only"].status is StepStatus.RETRYING  # attempt 1 of this run
    assert commands[0].will_retry and commands[1].attempt == 4  # type: ignore[union-attr]


def test_rerun_from_runs_the_step_and_everything_downstream_only() -> None:
    state = completed_run()
    state, commands = reduce(state, Replay("op-1", RERUN, at_ms=9_000, step_id="step-3"))
    assert ready_steps(commands) == [("step-3", 2)]
    assert state.steps["step-4"].status is StepStatus.WAITING
    assert state.steps["step-2"].output == output_of("step-2")  # kept, not run again

    state, commands = reduce(state, StepCompleted("step-3", 2, {"sent": "again"}, at_ms=9_010))
    assert ready_steps(commands) == [("step-4", 2)]
    assert commands[1].inputs["steps"]["step-3"] == {"sent": "again"}  # type: ignore[union-attr]
    state, commands = reduce(state, StepCompleted("step-4", 2, {"tech": 4}, at_ms=9_020))
    assert state.status is ExecutionStatus.COMPLETED
    assert commands[1].outputs["step-3"] == {"sent": "again"}  # type: ignore[union-attr]


def test_resume_sends_running_steps_again_at_their_attempt() -> None:
    state, _ = started()
    state, commands = reduce(state, Replay("op-1", RESUME, at_ms=3_000))
    assert ready_steps(commands) == [("step-1", 1)]
    assert state.status is ExecutionStatus.RUNNING and state.outstanding == 1


def test_a_request_applies_once_and_only_where_it_fits() -> None:
    failed, _ = reduce(started()[0], StepFailed("step-1", 1, "E: x", False, 1_010))
    retried, commands = reduce(failed, Replay("op-1", RETRY, at_ms=2_000))
    assert commands
    assert reduce(retried, Replay("op-1", RETRY, at_ms=2_001)) == (retried, ())  # redelivered
    assert reduce(retried, Replay("op-2", RETRY, at_ms=2_002)) == (retried, ())  # not failed
    done = completed_run()
    assert reduce(done, Replay("op-3", RESUME, at_ms=1)) == (done, ())
    assert reduce(done, Replay("op-4", RERUN, at_ms=1, step_id="nope")) == (done, ())
    assert not replay_applies(done, RETRY, None)
    assert replay_applies(done, RERUN, "step-1")


def test_checkpoints_keep_applied_requests_and_attempt_bases() -> None:
    state, _ = reduce(completed_run(), Replay("op-1", RERUN, at_ms=9_000, step_id="step-2"))
    assert state.steps["step-2"].base == 1
    assert state_from_dict(state_to_dict(state)) == state


EXAMPLES = settings(max_examples=200, deadline=None)


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_rerun_from_any_step_runs_exactly_it_and_its_descendants_once_more(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    def choose(n: int) -> int:
        return data.draw(st.integers(0, n - 1))

    run = run_all_succeed(definition, choose, limit=limit)
    first = len(run.ready_order)
    step_id = data.draw(st.sampled_from(sorted(definition.step_by_id)))
    run = drive(run, Replay("op", RERUN, at_ms=1, step_id=step_id), choose)

    again = Counter(run.ready_order[first:])
    assert again == Counter([step_id, *definition.graph.descendants(step_id)])
    assert run.state.status is ExecutionStatus.COMPLETED
    assert run.max_running <= limit
    assert all(s.attempt == 1 + again[i] for i, s in run.state.steps.items())


@EXAMPLES
@given(dags(), st.integers(1, 6), st.data())
def test_after_a_permanent_failure_a_retry_completes_every_step(
    definition: WorkflowDefinition, limit: int, data: st.DataObject
) -> None:
    def choose(n: int) -> int:
        return data.draw(st.integers(0, n - 1))

    # Replay a run up to a point where something runs, and fail a running step there.
    whole = run_all_succeed(definition, choose, limit=limit)
    state = new_execution("exec-1", definition, {"k": 1}, max_parallel_steps=limit)
    for event in whole.events[: data.draw(st.integers(1, len(whole.events) - 1))]:
        state, _ = reduce(state, event)
    running = [s for s, step in state.steps.items() if step.status is StepStatus.RUNNING]
    victim = data.draw(st.sampled_from(running))
    state, _ = reduce(state, StepFailed(victim, 1, "E: x", False, 5))
    assert state.status is ExecutionStatus.FAILED

    run = drive(Run(state), Replay("op", RETRY, at_ms=6), choose)
    assert run.state.status is ExecutionStatus.COMPLETED
    assert run.state.completed_steps == len(definition.steps)
    assert run.state.steps[victim].attempt == 2
