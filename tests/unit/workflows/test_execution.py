"""The execution state machine on hand-written scenarios."""

from __future__ import annotations

import pytest

from stepstream.workflows import (
    AttemptOutcome,
    CompleteWorkflow,
    EmitStepReady,
    EndAttempt,
    ExecutionState,
    ExecutionStatus,
    FailWorkflow,
    RetryPolicy,
    ScheduleRetry,
    Started,
    StepCompleted,
    StepDefinition,
    StepFailed,
    StepStatus,
    Tick,
    WorkflowDefinition,
    new_execution,
    reduce,
)
from stepstream.workflows.policies import backoff_ms

MAINTENANCE = WorkflowDefinition(
    "maintenance-request",
    1,
    "Maintenance request",
    (
        StepDefinition("step-1", "CREATE_MAINTENANCE_REQUEST"),
        StepDefinition("step-2", "ASSIGN_PRIORITY_AI", ("step-1",)),
        StepDefinition("step-3", "SEND_NOTIFICATION", ("step-1",)),
        StepDefinition("step-4", "ASSIGN_TECHNICIAN", ("step-2", "step-3")),
    ),
)


def ready_steps(commands: tuple[object, ...]) -> list[tuple[str, int]]:
    return [(c.step_id, c.attempt) for c in commands if isinstance(c, EmitStepReady)]


def started(
    definition: WorkflowDefinition = MAINTENANCE, limit: int = 10, parallel: bool = True
) -> tuple[ExecutionState, tuple[object, ...]]:
    state = new_execution(
        "exec-1",
        definition,
        {"title": "Leaking tap"},
        max_parallel_steps=limit,
        parallel_enabled=parallel,
    )
    return reduce(state, Started(at_ms=1_000))


def test_the_maintenance_workflow_releases_steps_as_dependencies_complete() -> None:
    state, commands = started()
    assert ready_steps(commands) == [("step-1", 1)]
    assert commands[0].inputs == {"input": {"title": "Leaking tap"}, "steps": {}}  # type: ignore[union-attr]

    state, commands = reduce(state, StepCompleted("step-1", 1, {"request_id": 7}, at_ms=1_010))
    assert ready_steps(commands) == [("step-2", 1), ("step-3", 1)]
    released = [c for c in commands if isinstance(c, EmitStepReady)]
    assert all(c.inputs["steps"] == {"step-1": {"request_id": 7}} for c in released)

    state, commands = reduce(state, StepCompleted("step-3", 1, {"sent": True}, at_ms=1_020))
    done = EndAttempt(
        "step-3",
        1,
        AttemptOutcome.COMPLETED,
        {"sent": True},
        finished_at_ms=1_020,
        released_at_ms=1_010,  # when step-1 completed
    )
    assert commands == (done,)  # step-4 still waits for step-2
    state, commands = reduce(state, StepCompleted("step-2", 1, {"priority": "HIGH"}, at_ms=1_030))
    assert ready_steps(commands) == [("step-4", 1)]
    assert commands[1].inputs["steps"] == {  # type: ignore[union-attr]
        "step-2": {"priority": "HIGH"},
        "step-3": {"sent": True},
    }

    state, commands = reduce(state, StepCompleted("step-4", 1, {"technician": 3}, at_ms=1_040))
    assert state.status is ExecutionStatus.COMPLETED
    assert commands[0] == EndAttempt(
        "step-4",
        1,
        AttemptOutcome.COMPLETED,
        {"technician": 3},
        finished_at_ms=1_040,
        released_at_ms=1_030,  # when step-2, its last dependency, completed
    )
    assert commands[1:] == (
        CompleteWorkflow(
            {
                "step-1": {"request_id": 7},
                "step-2": {"priority": "HIGH"},
                "step-3": {"sent": True},
                "step-4": {"technician": 3},
            },
            1_040,
        ),
    )
    assert (state.started_at_ms, state.finished_at_ms) == (1_000, 1_040)


def test_parallel_limit_queues_ready_steps_until_a_slot_frees() -> None:
    fan_out = WorkflowDefinition(
        "fan",
        1,
        "fan",
        (
            StepDefinition("root", "noop"),
            *(StepDefinition(f"leaf-{i}", "noop", ("root",)) for i in range(5)),
        ),
    )
    state, _ = started(fan_out, limit=2)
    state, commands = reduce(state, StepCompleted("root", 1, None, at_ms=1))
    assert ready_steps(commands) == [("leaf-0", 1), ("leaf-1", 1)]
    assert state.queue == ("leaf-2", "leaf-3", "leaf-4")
    assert state.steps["leaf-2"].status is StepStatus.QUEUED
    state, commands = reduce(state, StepCompleted("leaf-1", 1, None, at_ms=2))
    assert ready_steps(commands) == [("leaf-2", 1)]


def test_parallel_disabled_runs_one_step_at_a_time_in_plan_order() -> None:
    state, commands = started(parallel=False)
    order = ready_steps(commands)
    while state.status is ExecutionStatus.RUNNING:
        step_id, attempt = order[-1]
        state, commands = reduce(state, StepCompleted(step_id, attempt, None, at_ms=5))
        assert len(ready_steps(commands)) <= 1
        order += ready_steps(commands)
    assert [s for s, _ in order] == ["step-1", "step-2", "step-3", "step-4"]


RETRYING = WorkflowDefinition(
    "retrying",
    1,
    "retrying",
    (
        StepDefinition(
            "flaky",
            "noop",
            retry=RetryPolicy(
                max_attempts=3,
                initial_backoff_ms=100,
                multiplier=2,
                max_backoff_ms=1_000,
                jitter=0.0,
            ),
        ),
        StepDefinition("after", "noop", ("flaky",)),
    ),
)


def test_a_retryable_failure_is_retried_after_its_backoff() -> None:
    state, _ = started(RETRYING)
    state, commands = reduce(state, StepFailed("flaky", 1, "IOError: down", True, at_ms=2_000))
    failed = EndAttempt(
        "flaky",
        1,
        AttemptOutcome.FAILED,
        error="IOError: down",
        will_retry=True,
        finished_at_ms=2_000,
        released_at_ms=1_000,
    )
    assert commands == (failed, ScheduleRetry("flaky", 2, 2_100))
    assert state.steps["flaky"].status is StepStatus.RETRYING
    state, commands = reduce(state, Tick(now_ms=2_099))
    assert commands == ()
    state, commands = reduce(state, Tick(now_ms=2_100))
    assert ready_steps(commands) == [("flaky", 2)]
    state, commands = reduce(state, StepFailed("flaky", 2, "IOError: down", True, at_ms=3_000))
    assert commands[1:] == (ScheduleRetry("flaky", 3, 3_200),)
    state, commands = reduce(state, Tick(now_ms=5_000))
    state, commands = reduce(state, StepCompleted("flaky", 3, "ok", at_ms=5_001))
    assert ready_steps(commands) == [("after", 1)]
    assert state.steps["flaky"].attempt == 3


def test_a_late_result_of_an_earlier_attempt_is_ignored() -> None:
    state, _ = started(RETRYING)
    state, _ = reduce(state, StepFailed("flaky", 1, "TimeoutError: slow", True, at_ms=2_000))
    state, _ = reduce(state, Tick(now_ms=3_000))
    assert state.steps["flaky"].attempt == 2
    after, commands = reduce(state, StepCompleted("flaky", 1, "too late", at_ms=3_001))
    assert commands == () and after == state


def test_a_step_that_fails_for_good_fails_the_workflow_fast_and_names_the_step() -> None:
    state, _ = started(RETRYING)
    for attempt, at in [(1, 10), (2, 1_000)]:
        state, _ = reduce(state, StepFailed("flaky", attempt, "IOError: down", True, at_ms=at))
        state, _ = reduce(state, Tick(now_ms=at + 10_000))
    state, commands = reduce(
        state, StepFailed("flaky", 3, "IOError: still down", True, at_ms=20_000)
    )
    final = EndAttempt(
        "flaky",
        3,
        AttemptOutcome.FAILED,
        error="IOError: still down",
        finished_at_ms=20_000,
        released_at_ms=11_000,  # the tick that found attempt 3's backoff over
    )
    assert commands == (final, FailWorkflow("flaky", "IOError: still down", 20_000))
    assert state.status is ExecutionStatus.FAILED
    assert state.failure is not None and state.failure.step_id == "flaky"


def test_a_non_retryable_failure_is_final_at_once() -> None:
    state, _ = started(RETRYING)
    state, commands = reduce(state, StepFailed("flaky", 1, "ValueError: bad input", False, 50))
    assert commands[1:] == (FailWorkflow("flaky", "ValueError: bad input", 50),)
    assert commands[0].will_retry is False  # type: ignore[union-attr]


def test_after_a_failure_running_siblings_finish_but_nothing_new_starts() -> None:
    state, _ = started()
    state, _ = reduce(state, StepCompleted("step-1", 1, None, at_ms=1))
    state, commands = reduce(state, StepFailed("step-2", 1, "boom", False, at_ms=2))
    assert isinstance(commands[1], FailWorkflow)
    after, commands = reduce(state, StepCompleted("step-3", 1, None, at_ms=3))
    assert commands == () and after == state


@pytest.mark.parametrize(
    "event",
    [
        StepCompleted("step-1", 2, None, at_ms=5),  # an attempt that was never released
        StepCompleted("step-2", 1, None, at_ms=5),  # a step that is not running yet
        StepCompleted("nope", 1, None, at_ms=5),  # a step the workflow does not have
        StepFailed("step-3", 1, "x", True, at_ms=5),  # not running
        Started(at_ms=99),  # started twice
        Tick(now_ms=10**12),  # no retry is due
    ],
)
def test_events_that_do_not_fit_change_nothing(event: object) -> None:
    state, _ = started()
    assert reduce(state, event) == (state, ())  # type: ignore[arg-type]


def test_a_duplicate_completion_releases_nothing_twice() -> None:
    state, _ = started()
    state, first = reduce(state, StepCompleted("step-1", 1, "a", at_ms=1))
    again, second = reduce(state, StepCompleted("step-1", 1, "a", at_ms=2))
    assert ready_steps(first) == [("step-2", 1), ("step-3", 1)]
    assert second == () and again == state


def test_backoff_grows_is_capped_and_jitter_is_stable() -> None:
    policy = RetryPolicy(
        max_attempts=10, initial_backoff_ms=100, multiplier=3, max_backoff_ms=2_000, jitter=0.25
    )
    delays = [backoff_ms(policy, "e", "s", attempt) for attempt in range(1, 7)]
    assert delays == [backoff_ms(policy, "e", "s", attempt) for attempt in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        base = min(2_000, 100 * 3 ** (attempt - 1))
        assert base * 0.75 - 1 <= delay <= min(2_000, base * 1.25)
    assert delays[-1] <= 2_000
