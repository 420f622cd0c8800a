"""A queue step's timeout is the coordinator's: its worker may die without a word. At the
deadline the attempt fails as timed out and the retry policy applies; a late report of
that attempt changes nothing. Built-in steps keep the executor's own timeouts."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    AttemptOutcome,
    EndAttempt,
    ExecutionState,
    ExecutionStatus,
    FailWorkflow,
    Heartbeat,
    RetryPolicy,
    ScheduleRetry,
    ScheduleTimeout,
    Started,
    StepCompleted,
    StepDefinition,
    StepStatus,
    Tick,
    WorkflowDefinition,
    announce,
    new_execution,
    reduce,
)
from stepstream.workflows.checkpoint import state_from_dict, state_to_dict
from tests.unit.workflows.strategies import dags

CHARGE = StepDefinition(
    "charge",
    "CHARGE_CARD",
    queue="billing",
    timeout_ms=5_000,
    retry=RetryPolicy(max_attempts=2, initial_backoff_ms=1_000, jitter=0.0),
)
DEFINITION = WorkflowDefinition("queued", 1, "queued", (StepDefinition("local", "noop"), CHARGE))


def started() -> tuple[ExecutionState, tuple[object, ...]]:
    state = new_execution("x", DEFINITION, {}, max_parallel_steps=10)
    return reduce(state, Started(at_ms=1_000))


def test_only_queue_steps_get_a_timer() -> None:
    _, commands = started()
    timers = [c for c in commands if isinstance(c, ScheduleTimeout)]
    assert timers == [ScheduleTimeout("charge", 1, 6_000)]


def test_before_the_deadline_a_tick_changes_nothing() -> None:
    state, _ = started()
    assert reduce(state, Tick(now_ms=5_999)) == (state, ())


def test_at_the_deadline_the_attempt_fails_and_is_retried() -> None:
    state, _ = started()
    state, commands = reduce(state, Tick(now_ms=6_000))
    step = state.steps["charge"]
    assert step.status is StepStatus.RETRYING
    assert step.error == "StepTimeout: no report or heartbeat within 5000 ms"
    timed_out = EndAttempt(
        "charge",
        1,
        AttemptOutcome.TIMED_OUT,
        error="StepTimeout: no report or heartbeat within 5000 ms",
        will_retry=True,
        finished_at_ms=6_000,
        released_at_ms=1_000,
    )
    assert commands == (timed_out, ScheduleRetry("charge", 2, 7_000))
    assert state.steps["local"].status is StepStatus.RUNNING  # the executor's step: no timer
    state, commands = reduce(state, Tick(now_ms=7_000))
    assert state.steps["charge"].attempt == 2
    assert ScheduleTimeout("charge", 2, 12_000) in commands


def test_a_late_report_of_the_timed_out_attempt_changes_nothing() -> None:
    state, _ = started()
    state, _ = reduce(state, Tick(now_ms=6_000))
    late = StepCompleted("charge", 1, {"charged": True}, at_ms=6_500)
    assert reduce(state, late) == (state, ())


def test_the_last_attempt_timing_out_fails_the_workflow() -> None:
    state, _ = started()
    state, _ = reduce(state, Tick(now_ms=6_000))
    state, _ = reduce(state, Tick(now_ms=7_000))  # attempt 2 released at 7,000
    state, commands = reduce(state, Tick(now_ms=12_000))
    assert state.status is ExecutionStatus.FAILED
    assert commands[0].outcome is AttemptOutcome.TIMED_OUT  # type: ignore[union-attr]
    assert commands[1:] == (
        FailWorkflow("charge", "StepTimeout: no report or heartbeat within 5000 ms", 12_000),
    )


def test_a_report_in_time_disarms_it() -> None:
    state, _ = started()
    state, _ = reduce(state, StepCompleted("charge", 1, {}, at_ms=4_000))
    assert reduce(state, Tick(now_ms=60_000))[0].steps["charge"].status is StepStatus.COMPLETED


def test_a_recovered_coordinator_re_arms_the_timer() -> None:
    state, _ = started()
    assert ScheduleTimeout("charge", 1, 6_000) in announce(state)


def test_a_heartbeat_moves_the_deadline_and_arms_a_timer_for_it() -> None:
    state, _ = started()
    state, commands = reduce(state, Heartbeat("charge", 1, at_ms=4_000))
    assert commands == (ScheduleTimeout("charge", 1, 9_000),)
    assert reduce(state, Tick(now_ms=6_000)) == (state, ())  # the first timer: nothing due
    state, _ = reduce(state, Tick(now_ms=9_000))
    assert state.steps["charge"].status is StepStatus.RETRYING


def test_the_heartbeat_survives_the_checkpoint_and_re_arming() -> None:
    state, _ = started()
    state, _ = reduce(state, Heartbeat("charge", 1, at_ms=4_000))
    restored = state_from_dict(state_to_dict(state))
    assert restored == state
    assert ScheduleTimeout("charge", 1, 9_000) in announce(restored)


def test_heartbeats_that_do_not_fit_change_nothing() -> None:
    state, _ = started()
    later, _ = reduce(state, Heartbeat("charge", 1, at_ms=4_000))
    assert reduce(later, Heartbeat("charge", 1, at_ms=3_000)) == (later, ())  # out of order
    assert reduce(state, Heartbeat("charge", 2, at_ms=4_000)) == (state, ())  # not current
    assert reduce(state, Heartbeat("local", 1, at_ms=4_000)) == (state, ())  # built-in step
    timed_out, _ = reduce(state, Tick(now_ms=6_000))
    assert reduce(timed_out, Heartbeat("charge", 1, at_ms=6_500)) == (timed_out, ())


def test_the_next_attempt_starts_without_the_last_ones_heartbeat() -> None:
    state, _ = started()
    state, _ = reduce(state, Heartbeat("charge", 1, at_ms=4_000))
    state, _ = reduce(state, Tick(now_ms=9_000))
    state, commands = reduce(state, Tick(now_ms=10_000))
    assert state.steps["charge"].alive_at_ms is None
    assert ScheduleTimeout("charge", 2, 15_000) in commands


@settings(max_examples=200, deadline=None)
@given(dag=dags(max_steps=8), data=st.data())
def test_random_executions_with_queue_steps_end_and_ignore_timed_out_reports(
    dag: WorkflowDefinition, data: st.DataObject
) -> None:
    """Random DAGs where random steps are queue steps, under a random mix of reports
    clock ticks and heartbeats: at most `limit` steps are outstanding; a report of an attempt that
    timed out never changes the state; and once the clock runs on and every built-in step
    reports, the execution ends."""
    queued = data.draw(st.sets(st.sampled_from([s.id for s in dag.steps])))
    steps = tuple(
        replace(
            step,
            type="REMOTE",
            queue="q",
            timeout_ms=data.draw(st.integers(1, 5_000)),
            retry=RetryPolicy(max_attempts=data.draw(st.integers(1, 3)), jitter=0.0),
        )
        if step.id in queued
        else step
        for step in dag.steps
    )
    definition = replace(dag, steps=steps)
    state, _ = reduce(new_execution("x", definition, {}, max_parallel_steps=3), Started(at_ms=0))
    now, timed_out = 0, set()

    def apply(event: object) -> None:
        nonlocal state
        before = state
        state, _ = reduce(state, event)  # type: ignore[arg-type]
        assert state.outstanding <= state.max_outstanding
        for step_id, step in before.steps.items():
            after = state.steps[step_id]
            retried = after.attempt > step.attempt > 0
            gave_up = (
                step.status is StepStatus.RUNNING
                and after.status is not StepStatus.RUNNING
                and (after.error or "").startswith("StepTimeout")
            )
            if retried or gave_up:
                timed_out.add((step_id, step.attempt))

    for _ in range(data.draw(st.integers(0, 40))):
        running = [s for s, step in state.steps.items() if step.status is StepStatus.RUNNING]
        action = data.draw(st.sampled_from(["report", "heartbeat", "tick"]))
        if action == "report" and running:
            step_id = data.draw(st.sampled_from(running))
            apply(StepCompleted(step_id, state.steps[step_id].attempt, {}, at_ms=now))
        elif action == "heartbeat" and running:
            step_id = data.draw(st.sampled_from(running))
            apply(Heartbeat(step_id, state.steps[step_id].attempt, at_ms=now))
        else:
            now += data.draw(st.integers(0, 3_000))
            apply(Tick(now_ms=now))
        for step_id, attempt in sorted(timed_out):  # their workers report late
            assert reduce(state, StepCompleted(step_id, attempt, {}, at_ms=now)) == (state, ())
            assert reduce(state, Heartbeat(step_id, attempt, at_ms=now)) == (state, ())
    for _ in range(100):  # then the clock runs on and the built-in steps report
        if state.status is not ExecutionStatus.RUNNING:
            break
        for step_id, step in list(state.steps.items()):
            if step.status is StepStatus.RUNNING and step_id not in queued:
                apply(StepCompleted(step_id, step.attempt, {}, at_ms=now))
        now += 10_000
        apply(Tick(now_ms=now))
    assert state.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
