"""Conditional steps and join rules: a step whose condition is false is skipped (and says
so); a join is decided once every dependency has finished, never on the first arrival;
skipped steps have no output; cleanup steps (all_done) run after a failure; cancel ends
an execution and nothing new starts."""

from __future__ import annotations

from typing import Any

import pytest

from stepstream.workflows import (
    CompleteWorkflow,
    EmitStepReady,
    ExecutionState,
    ExecutionStatus,
    FailWorkflow,
    InvalidDefinition,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepFailed,
    StepStatus,
    parse_definition,
    reduce,
)
from stepstream.workflows.checkpoint import state_from_dict, state_to_dict
from stepstream.workflows.execution import CancelWorkflow, SkipStep, new_execution

ESCALATION = """
id: escalation
version: 1
steps:
  - {id: assess, type: noop}
  - {id: escalate, type: noop, dependsOn: [assess], when: 'steps.assess.priority == "URGENT"'}
  - {id: assign, type: noop, dependsOn: [assess]}
  - {id: report, type: noop, dependsOn: [escalate, assign]}
  - {id: audit, type: noop, dependsOn: [escalate], trigger: all_success}
"""


def started(text: str, workflow_input: dict[str, Any] | None = None) -> ExecutionState:
    definition = parse_definition(text, "yaml")
    state = new_execution("x", definition, workflow_input or {}, max_parallel_steps=10)
    return reduce(state, Started(at_ms=0))[0]


def complete(
    state: ExecutionState, step_id: str, output: Any = None, at_ms: int = 1
) -> tuple[ExecutionState, tuple[object, ...]]:
    attempt = state.steps[step_id].attempt
    return reduce(state, StepCompleted(step_id, attempt, output or {}, at_ms=at_ms))


def test_a_false_condition_skips_the_step_and_says_what_it_saw() -> None:
    state, commands = complete(started(ESCALATION), "assess", {"priority": "LOW"})
    escalate = state.steps["escalate"]
    assert escalate.status is StepStatus.SKIPPED
    reason = (
        'condition false: steps.assess.priority == "URGENT" (saw steps.assess.priority = "LOW")'
    )
    assert escalate.error == reason
    assert SkipStep("escalate", reason) in commands
    # audit requires every dependency completed: skipped along with it.
    assert state.steps["audit"].status is StepStatus.SKIPPED
    assert state.steps["audit"].error == "dependency escalate was skipped (trigger all_success)"
    # the join runs on its other branch, and sees no output of the skipped one.
    state, commands = complete(state, "assign", {"technician": "t-1"})
    (ready,) = [c for c in commands if isinstance(c, EmitStepReady)]
    assert ready.step_id == "report"
    assert ready.inputs["steps"] == {"assign": {"technician": "t-1"}}
    state, commands = complete(state, "report")
    (outcome,) = [c for c in commands if isinstance(c, CompleteWorkflow)]
    assert set(outcome.outputs) == {"assess", "assign", "report"}  # absent, not null
    assert state.status is ExecutionStatus.COMPLETED


def test_a_true_condition_runs_the_step() -> None:
    _, commands = complete(started(ESCALATION), "assess", {"priority": "URGENT"})
    released = {c.step_id for c in commands if isinstance(c, EmitStepReady)}
    assert released == {"escalate", "assign"}


def test_a_join_is_decided_only_when_every_dependency_has_finished() -> None:
    state, _ = complete(started(ESCALATION), "assess", {"priority": "URGENT"})
    state, commands = complete(state, "assign")
    assert state.steps["report"].status is StepStatus.WAITING  # escalate still runs
    assert not [c for c in commands if isinstance(c, EmitStepReady)]
    state, commands = complete(state, "escalate")
    assert {c.step_id for c in commands if isinstance(c, EmitStepReady)} == {"report", "audit"}


def test_a_join_of_skipped_branches_only_is_skipped() -> None:
    text = """
id: all-skipped
version: 1
steps:
  - {id: a, type: noop, when: 'input.go'}
  - {id: b, type: noop, when: 'input.go'}
  - {id: join, type: noop, dependsOn: [a, b]}
  - {id: cleanup, type: noop, dependsOn: [join], trigger: all_done}
"""
    state = started(text, {"go": False})
    assert state.steps["join"].status is StepStatus.SKIPPED
    assert state.steps["join"].error == "every dependency was skipped"
    assert state.steps["cleanup"].status is StepStatus.RUNNING  # all_done: whatever happened
    state, _ = complete(state, "cleanup")
    assert state.status is ExecutionStatus.COMPLETED


def test_cleanup_steps_run_after_a_failure_then_the_workflow_fails() -> None:
    text = """
id: with-cleanup
version: 1
steps:
  - {id: charge, type: noop}
  - {id: ship, type: noop, dependsOn: [charge]}
  - {id: notify, type: noop, dependsOn: [ship], trigger: all_done}
"""
    state = started(text)
    state, commands = reduce(state, StepFailed("charge", 1, "Declined", False, at_ms=5))
    assert state.status is ExecutionStatus.RUNNING and state.failure is not None
    assert state.steps["ship"].status is StepStatus.SKIPPED
    assert [c.step_id for c in commands if isinstance(c, EmitStepReady)] == ["notify"]
    state, commands = complete(state, "notify")
    assert state.status is ExecutionStatus.FAILED
    assert commands[-1] == FailWorkflow("charge", "Declined", 1)


def test_a_condition_that_cannot_be_evaluated_fails_the_step_with_the_reason() -> None:
    text = """
id: broken
version: 1
steps:
  - {id: a, type: noop}
  - {id: b, type: noop, dependsOn: [a], when: 'steps.a.missing == 1'}
"""
    state, commands = complete(started(text), "a", {"present": 1})
    assert state.status is ExecutionStatus.FAILED
    assert state.steps["b"].error == "ConditionError: steps.a.missing: no such key or item"
    assert FailWorkflow("b", "ConditionError: steps.a.missing: no such key or item", 1) in commands


def test_cancel_ends_the_execution_and_later_reports_change_nothing() -> None:
    state = started(ESCALATION)
    cancel = Replay("r-1", ReplayAction.CANCEL, at_ms=7, reason="customer withdrew")
    state, commands = reduce(state, cancel)
    assert state.status is ExecutionStatus.CANCELLED
    assert commands == (CancelWorkflow("customer withdrew", 7),)
    assert complete(state, "assess") == (state, ())
    assert reduce(state, cancel) == (state, ())
    assert state_from_dict(state_to_dict(state)) == state


def test_skips_survive_the_checkpoint_and_are_announced_again() -> None:
    from stepstream.workflows import announce

    state, _ = complete(started(ESCALATION), "assess", {"priority": "LOW"})
    assert state_from_dict(state_to_dict(state)) == state
    skipped = {c.step_id for c in announce(state) if isinstance(c, SkipStep)}
    assert skipped == {"escalate", "audit"}


def test_a_rerun_decides_the_skipped_steps_again() -> None:
    state, _ = complete(started(ESCALATION), "assess", {"priority": "LOW"})
    state, _ = complete(state, "assign")
    state, _ = complete(state, "report")
    assert state.status is ExecutionStatus.COMPLETED
    rerun = Replay("r-2", ReplayAction.RERUN_FROM, at_ms=9, step_id="assess")
    state, _ = reduce(state, rerun)
    state, commands = complete(state, "assess", {"priority": "URGENT"})
    assert {c.step_id for c in commands if isinstance(c, EmitStepReady)} == {"escalate", "assign"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "{id: b, type: noop, dependsOn: [a], when: 'steps.c.x'}",
            "reads step 'c', which it does not run after (a)",
        ),
        ("{id: b, type: noop, dependsOn: [a], when: 'steps.a.x =='}", "syntax error"),
        ("{id: b, type: noop, dependsOn: [a], when: 'now() > 1'}", "unknown function 'now'"),
        (
            "{id: b, type: noop, dependsOn: [a], trigger: sometimes}",
            "must be one of none_failed, all_success, all_done",
        ),
    ],
)
def test_conditions_are_checked_with_the_definition(body: str, problem: str) -> None:
    steps = ["{id: a, type: noop}", body, "{id: c, type: noop, dependsOn: [b]}"]
    text = "id: w\nversion: 1\nsteps:\n" + "".join(f"  - {step}\n" for step in steps)
    with pytest.raises(InvalidDefinition) as raised:
        parse_definition(text, "yaml")
    assert any(problem in str(p) for p in raised.value.problems), raised.value.problems


def test_plans_show_conditions_as_dashed_labelled_edges() -> None:
    from stepstream.workflows import to_dot, to_mermaid

    definition = parse_definition(ESCALATION, "yaml")
    mermaid = to_mermaid(definition)
    assert 's0 -.->|"when: steps.assess.priority == #quot;URGENT#quot;"| s1' in mermaid
    assert "trigger: all_success" in mermaid
    dot = to_dot(definition)
    label = 'label="when: steps.assess.priority == \\"URGENT\\""'
    assert f'"assess" -> "escalate" [style=dashed, {label}];' in dot


def test_parallel_means_two_steps_outstanding_at_once() -> None:
    from stepstream.workflows.state import ran_in_parallel

    state = started(ESCALATION)
    state, _ = complete(state, "assess", {"priority": "URGENT"}, at_ms=10)  # releases two
    assert not ran_in_parallel(state)  # only one step has finished so far
    state, _ = complete(state, "assign", at_ms=20)
    state, _ = complete(state, "escalate", at_ms=30)
    assert ran_in_parallel(state)
    chain = started(
        "id: c\nversion: 1\nsteps:\n  - {id: a, type: noop}\n"
        "  - {id: b, type: noop, dependsOn: [a]}\n"
    )
    chain, _ = complete(chain, "a", at_ms=10)
    chain, _ = complete(chain, "b", at_ms=20)
    assert not ran_in_parallel(chain)
