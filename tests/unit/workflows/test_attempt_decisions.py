"""Every attempt's end is one decision of the coordinator (`EndAttempt`), and a report
it does not apply is an ignored decision with the reason, never an outcome.

A run is driven by hypothesis through what workers and the clock do to a queue DAG with
retries: reports that complete or fail the current attempt, deadlines passing, late
reports of attempts already timed out or retried, copies of reports already applied.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    AttemptOutcome,
    EmitStepReady,
    EndAttempt,
    Event,
    ExecutionState,
    ExecutionStatus,
    RetryPolicy,
    Started,
    StepCompleted,
    StepDefinition,
    StepFailed,
    StepStatus,
    Tick,
    WorkflowDefinition,
    announce,
    new_execution,
)
from stepstream.workflows.batch import Delivery, apply_batch
from stepstream.workflows.execution import ended_attempt

EXAMPLES = settings(max_examples=300, deadline=None)
TIMEOUT_MS = 1_000
TENANT = "acme"


@st.composite
def queue_dags(draw: st.DrawFn) -> WorkflowDefinition:
    count = draw(st.integers(1, 5))
    steps = []
    for index in range(count):
        deps = draw(st.lists(st.integers(0, index - 1), unique=True, max_size=2)) if index else []
        retry = RetryPolicy(max_attempts=draw(st.integers(1, 3)), initial_backoff_ms=10, jitter=0)
        steps.append(
            StepDefinition(
                f"s{index}",
                "work",
                tuple(f"s{d}" for d in deps),
                retry=retry,
                timeout_ms=TIMEOUT_MS,
                queue="q",
            )
        )
    return WorkflowDefinition("w", 1, "w", tuple(steps))


@st.composite
def runs(draw: st.DrawFn) -> tuple[ExecutionState, list[Event]]:
    """A whole run's events, and the state they lead to (driven through the reducer)."""
    state = new_execution("e", draw(queue_dags()), {}, max_parallel_steps=3)
    events: list[Event] = [Started(0)]
    state, _ = apply(state, events[0])
    now = 0
    reports: list[StepCompleted | StepFailed] = []
    for _ in range(60):
        if state.status is not ExecutionStatus.RUNNING:
            break
        now += 1
        running = [s for s, step in state.steps.items() if step.status is StepStatus.RUNNING]
        choice = draw(st.sampled_from(["complete", "fail", "fatal", "timeout", "late", "copy"]))
        event: Event
        if choice in ("late", "copy") and reports:
            event = draw(st.sampled_from(reports))  # an old report, or a copy of one
            if choice == "late":
                event = StepCompleted(event.step_id, event.attempt, {"late": True}, now)
        elif choice == "timeout" or not running:
            now += TIMEOUT_MS  # past every deadline and every backoff
            event = Tick(now)
        else:
            step_id = draw(st.sampled_from(running))
            attempt = state.steps[step_id].attempt
            if choice == "complete":
                event = StepCompleted(step_id, attempt, {"from": step_id}, now, worker="w1")
            else:
                event = StepFailed(step_id, attempt, "Boom: no", choice == "fail", now, worker="w1")
        if isinstance(event, StepCompleted | StepFailed):
            reports.append(event)
        events.append(event)
        state, _ = apply(state, event)
    return state, events


def apply(state: ExecutionState, event: Event) -> tuple[ExecutionState, list[EndAttempt]]:
    decision = apply_batch(state, TENANT, {}, [Delivery("c", 0, event)])
    return decision.state, [
        e.command for e in decision.emissions if isinstance(e.command, EndAttempt)
    ]


def decided(
    events: list[Event], definition: WorkflowDefinition
) -> tuple[ExecutionState, list[tuple[int, EndAttempt]], list[EmitStepReady]]:
    state = new_execution("e", definition, {}, max_parallel_steps=3)
    decisions: list[tuple[int, EndAttempt]] = []
    released: list[EmitStepReady] = []
    for offset, event in enumerate(events):
        result = apply_batch(
            state, TENANT, {"c": -1} if offset else None, [Delivery("c", offset, event, TENANT)]
        )
        for emission in result.emissions:
            if isinstance(emission.command, EndAttempt):
                decisions.append((offset, emission.command))
            elif isinstance(emission.command, EmitStepReady):
                released.append(emission.command)
        state = result.state
    return state, decisions, released


@EXAMPLES
@given(runs())
def test_each_released_attempt_ends_in_at_most_one_outcome_and_every_ended_one_in_one(
    run: tuple[ExecutionState, list[Event]],
) -> None:
    final, events = run
    state, decisions, released = decided(events, final.definition)
    assert state == final
    outcomes = Counter(
        (d.step_id, d.attempt) for _, d in decisions if d.outcome is not AttemptOutcome.IGNORED
    )
    assert all(n == 1 for n in outcomes.values()), outcomes
    attempts = {(r.step_id, r.attempt) for r in released}
    assert set(outcomes) <= attempts  # only released attempts end
    if state.status is ExecutionStatus.RUNNING:
        return
    # An ended execution left no attempt undecided, but those it ended while they ran.
    still_running = {
        (s, step.attempt) for s, step in state.steps.items() if step.status is StepStatus.RUNNING
    }
    assert attempts - set(outcomes) <= still_running


@EXAMPLES
@given(runs())
def test_a_report_not_applied_is_ignored_with_a_reason_and_a_copy_of_an_applied_one_is_silent(
    run: tuple[ExecutionState, list[Event]],
) -> None:
    final, events = run
    _, decisions, _ = decided(events, final.definition)
    by_event: dict[int, list[EndAttempt]] = {}
    for index, decision in decisions:
        by_event.setdefault(index, []).append(decision)
    applied: set[tuple[str, int, str]] = set()
    for index, event in enumerate(events):
        mine = by_event.get(index, [])
        if not isinstance(event, StepCompleted | StepFailed):
            assert all(d.outcome is AttemptOutcome.TIMED_OUT for d in mine)  # only the clock
            continue
        kind = "completed" if isinstance(event, StepCompleted) else "failed"
        identity = (event.step_id, event.attempt, kind)
        if not mine:  # silent: only a copy of the report that ended its attempt
            assert identity in applied
            continue
        assert len(mine) == 1 and (mine[0].step_id, mine[0].attempt) == identity[:2]
        if mine[0].outcome is AttemptOutcome.IGNORED:
            assert mine[0].report == kind and mine[0].error, mine[0]
        else:
            assert identity not in applied and mine[0].outcome == kind
            applied.add(identity)


@EXAMPLES
@given(runs())
def test_what_is_announced_again_is_the_last_decision_on_each_step(
    run: tuple[ExecutionState, list[Event]],
) -> None:
    """Delivery rule 2 for decisions: a redelivery re-emits, from the checkpoint alone,
    the decision on each step's last ended attempt, the same as was first emitted."""
    final, events = run
    _, decisions, _ = decided(events, final.definition)
    last: dict[str, EndAttempt] = {}
    for _, decision in decisions:
        if decision.outcome is not AttemptOutcome.IGNORED:
            last[decision.step_id] = decision
    announced = {c.step_id: c for c in announce(final) if isinstance(c, EndAttempt)}
    for step_id, decision in last.items():
        step = final.steps[step_id]
        if step.status in (StepStatus.WAITING, StepStatus.QUEUED):
            continue  # never in these runs: no operator replays
        again = ended_attempt(final, step_id, step)
        if step.status is StepStatus.RUNNING and step.attempt - 1 != decision.attempt:
            continue  # the step's latest attempt is running and none of it ended yet
        assert again is not None and announced[step_id] == again
        if step.status is StepStatus.FAILED and "not retried" in (step.error or ""):
            continue  # a cleanup workflow's failure turned a retry into a failure
        assert (again.attempt, again.outcome, again.error, again.output) == (
            decision.attempt,
            decision.outcome,
            decision.error,
            decision.output,
        )
