"""Property tests of conditions and join rules, against the bugs users of other engines
report most: a join skipped wrongly or decided too early, a join that never completes, a
step running although its dependency was skipped, a step released twice.

Random DAGs with random conditions (true or false from the input), random trigger rules
and retry policies; the steps report in a random order, fail (retryably or not), reports
are delivered twice, the clock moves, an operator may cancel. Checked on every
transition and at the end."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    EmitStepReady,
    Event,
    ExecutionState,
    ExecutionStatus,
    Replay,
    ReplayAction,
    RetryPolicy,
    Started,
    StepCompleted,
    StepFailed,
    StepStatus,
    Tick,
    Trigger,
    WorkflowDefinition,
    new_execution,
    reduce,
)
from stepstream.workflows.state import FINISHED
from tests.unit.workflows.strategies import dags


@st.composite
def conditional_workflows(draw: st.DrawFn) -> tuple[WorkflowDefinition, dict[str, Any]]:
    dag = draw(dags(max_steps=10))
    steps = []
    for step in dag.steps:
        conditional = draw(st.booleans())
        steps.append(
            replace(
                step,
                when=f'input["go"]["{step.id}"]' if conditional else None,
                trigger=draw(st.sampled_from(list(Trigger))),
                retry=RetryPolicy(
                    max_attempts=draw(st.integers(1, 2)), initial_backoff_ms=10, jitter=0.0
                ),
            )
        )
    go = {step.id: draw(st.booleans()) for step in steps}
    return replace(dag, steps=tuple(steps)), {"go": go}


def expected_to_run(
    definition: WorkflowDefinition, state: ExecutionState, step_id: str, go: dict[str, bool]
) -> bool:
    """What the rules say, from the dependencies' final states (no failure happened)."""
    step = definition.step_by_id[step_id]
    statuses = [state.steps[d].status for d in step.depends_on]
    if step.trigger is Trigger.ALL_SUCCESS:
        runs = all(s is StepStatus.COMPLETED for s in statuses)
    elif step.trigger is Trigger.NONE_FAILED:
        runs = not statuses or any(s is StepStatus.COMPLETED for s in statuses)
    else:
        runs = True
    return runs and (step.when is None or go[step_id])


@settings(max_examples=500, deadline=None)
@given(workflow=conditional_workflows(), data=st.data())
def test_every_execution_ends_and_every_step_runs_exactly_when_its_rule_says(
    workflow: tuple[WorkflowDefinition, dict[str, Any]], data: st.DataObject
) -> None:
    definition, workflow_input = workflow
    state = new_execution("x", definition, workflow_input, max_parallel_steps=3)
    released: set[tuple[str, int]] = set()
    reports: list[Event] = []
    now = 0

    def apply(event: Event) -> None:
        nonlocal state
        before = state
        state, commands = reduce(state, event)
        if before.status in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        ):
            assert (state, commands) == (before, ())  # nothing after the end
        for command in commands:
            if not isinstance(command, EmitStepReady):
                continue
            key = (command.step_id, command.attempt)
            assert key not in released, f"{key} released twice"
            released.add(key)
            step = definition.step_by_id[command.step_id]
            for dependency in step.depends_on:  # never before every dependency finished
                assert state.steps[dependency].status in FINISHED, (command.step_id, dependency)
                if step.trigger is not Trigger.ALL_DONE:  # never after a skipped-only join
                    assert state.steps[dependency].status is not StepStatus.FAILED
            # a failing workflow starts nothing but its cleanup steps
            assert state.failure is None or step.trigger is Trigger.ALL_DONE

    apply(Started(at_ms=0))
    for _ in range(data.draw(st.integers(0, 30))):
        running = sorted(s for s, step in state.steps.items() if step.status is StepStatus.RUNNING)
        action = data.draw(st.sampled_from(["complete", "fail", "again", "tick", "cancel"]))
        if action in ("complete", "fail") and running:
            step_id = data.draw(st.sampled_from(running))
            attempt = state.steps[step_id].attempt
            report: Event = (
                StepCompleted(step_id, attempt, {"by": step_id}, at_ms=now)
                if action == "complete"
                else StepFailed(step_id, attempt, "boom", data.draw(st.booleans()), at_ms=now)
            )
            reports.append(report)
            apply(report)
        elif action == "again" and reports:
            before = state
            apply(data.draw(st.sampled_from(reports)))
            assert state == before  # a report delivered twice changes nothing
        elif action == "tick":
            now += data.draw(st.integers(0, 50))
            apply(Tick(now_ms=now))
        elif action == "cancel" and data.draw(st.integers(0, 4)) == 0:
            apply(Replay(f"cancel-{now}", ReplayAction.CANCEL, at_ms=now, reason="operator"))
    for _ in range(200):  # then every running step completes and the clock runs on
        if state.status is not ExecutionStatus.RUNNING:
            break
        for step_id in sorted(state.steps):
            step = state.steps[step_id]
            if step.status is StepStatus.RUNNING:
                apply(StepCompleted(step_id, step.attempt, {"by": step_id}, at_ms=now))
        now += 100
        apply(Tick(now_ms=now))
    assert state.status in (
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
    )

    if state.status is ExecutionStatus.COMPLETED:
        for step_id in definition.graph.order:
            runs = expected_to_run(definition, state, step_id, workflow_input["go"])
            assert state.steps[step_id].status is (
                StepStatus.COMPLETED if runs else StepStatus.SKIPPED
            )
    if state.status is ExecutionStatus.FAILED and definition.has_cleanup_steps:
        for step_id, step in state.steps.items():
            assert step.status in FINISHED, step_id  # nothing left hanging
            if (
                definition.step_by_id[step_id].trigger is Trigger.ALL_DONE
                and step.status is StepStatus.SKIPPED
            ):
                assert not workflow_input["go"][step_id]  # only its own condition skips it
