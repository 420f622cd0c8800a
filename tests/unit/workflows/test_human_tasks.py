"""Human tasks in the pure core: the definition language (a form must be a JSON Schema),
the reducer's open, answer, refuse and time out, whatever the order of answers, their
copies and the ones that miss the form."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    ArmTimer,
    AttemptOutcome,
    EndAttempt,
    ExecutionState,
    ExecutionStatus,
    InvalidDefinition,
    OpenTask,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepStatus,
    TaskAnswered,
    Tick,
    WorkflowDefinition,
    announce,
    build_definition,
    definition_to_dict,
    new_execution,
    reduce,
    state_from_dict,
    state_to_dict,
)
from stepstream.workflows.batch import Delivery, apply_batch
from stepstream.workflows.explain import explain
from stepstream.workflows.stalls import stall_deadline

FORM = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}},
}


def approval(on_timeout: str | None = None, **human: Any) -> WorkflowDefinition:
    """quote; then a manager's approval (input.manager); then order."""
    task: dict[str, Any] = {"id": "approval", "dependsOn": ["quote"]}
    task["human"] = {"assignee": "input.manager", "form": FORM, **human}
    if on_timeout is not None:
        task["onTimeout"] = on_timeout
    return build_definition(
        {
            "id": "approve",
            "steps": [
                {"id": "quote", "type": "noop"},
                task,
                {"id": "order", "type": "noop", "dependsOn": ["approval"]},
            ],
        },
        step_types={"noop"},
    )


def opened(definition: WorkflowDefinition) -> ExecutionState:
    """Started, the quote done: the approval task is open."""
    state = new_execution("e1", definition, {"manager": "ann"}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=1_000))
    state, commands = reduce(state, StepCompleted("quote", 1, {"total": 900}, at_ms=2_000))
    assert any(isinstance(c, OpenTask) for c in commands)
    return state


def answer(value: Any, by: str = "ann", attempt: int = 1, at_ms: int = 3_000) -> TaskAnswered:
    return TaskAnswered("approval", attempt, value, by, at_ms)


def test_a_human_step_survives_its_written_form_and_a_checkpoint() -> None:
    definition = approval(title="Approve the quote", timeout="48h", on_timeout="continue")
    again = build_definition(definition_to_dict(definition), step_types={"noop"})
    assert again == definition
    step = again.step_by_id["approval"]
    assert step.type == "human" and step.held
    assert step.human is not None and step.human.timeout_ms == 48 * 3_600_000
    state = opened(definition)
    assert state_from_dict(state_to_dict(state)) == state


@pytest.mark.parametrize(
    ("human", "problem"),
    [
        ({"form": {"type": "nothing"}}, "human.form: not a valid JSON Schema"),
        ({"form": "a string"}, "human.form: must be a JSON Schema (a mapping)"),
        ({}, "human.form: is required"),
        ({"form": FORM, "assignee": "input.("}, "human.assignee"),
        ({"form": FORM, "assignee": 7}, "human.assignee: must be an expression in a string"),
        ({"form": FORM, "owner": "x"}, "unknown field 'owner'"),
        ({"form": FORM, "timeout": "soon"}, "human.timeout"),
    ],
)
def test_a_bad_human_step_is_refused_with_its_location(human: dict[str, Any], problem: str) -> None:
    raw = {"id": "w", "steps": [{"id": "ask", "human": human}]}
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw)
    assert any(problem in str(p) for p in refused.value.problems), refused.value.problems


def test_a_human_step_takes_no_worker_fields_and_its_type_is_human() -> None:
    for extra, problem in (
        ({"queue": "q"}, "takes no 'queue'"),
        ({"type": "noop"}, "a human task's type is 'human'"),
        ({"onTimeout": "skip"}, "onTimeout is set, but the wait has no timeout"),
    ):
        raw = {"id": "w", "steps": [{"id": "ask", "human": {"form": FORM}, **extra}]}
        with pytest.raises(InvalidDefinition) as refused:
            build_definition(raw, step_types={"noop"})
        assert any(problem in str(p) for p in refused.value.problems), refused.value.problems


def test_a_task_opens_for_its_assignee_instead_of_running() -> None:
    state = new_execution("e1", approval(timeout="1h"), {"manager": "ann"}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=1_000))
    state, commands = reduce(state, StepCompleted("quote", 1, {}, at_ms=2_000))
    due = 2_000 + 3_600_000
    assert commands[-2:] == (ArmTimer("approval", 1, due), OpenTask("approval", 1, "ann", due))
    assert state.steps["approval"].status is StepStatus.RUNNING
    assert explain(state, 2_000)["approval"].startswith("waiting for an answer from ann, until")
    assert stall_deadline(state, 0) == due, "not stalled before its timeout"
    again = announce(state)  # a redelivery opens it again, with the same due time
    assert OpenTask("approval", 1, "ann", due) in again


def test_an_answer_that_matches_the_form_completes_the_step_with_who_answered() -> None:
    state = opened(approval())
    after, commands = reduce(state, answer({"approved": True}))
    step = after.steps["approval"]
    assert (step.status, step.output, step.worker) == (
        StepStatus.COMPLETED,
        {"approved": True},
        "human:ann",
    )
    assert step.started_at_ms == 2_000, "the task opened then"
    ended = [c for c in commands if isinstance(c, EndAttempt)]
    assert ended[0].outcome is AttemptOutcome.COMPLETED and ended[0].worker == "human:ann"


def test_an_answer_that_misses_the_form_changes_nothing_and_says_why() -> None:
    state = opened(approval())
    after, commands = reduce(state, answer({"approved": "yes"}))
    assert after is state and commands == ()
    decision = apply_batch(state, "t", {"x": 0}, [Delivery("x", 1, answer({"approved": "yes"}))])
    (ignored,) = [e.command for e in decision.ignored]
    assert isinstance(ignored, EndAttempt) and ignored.outcome is AttemptOutcome.IGNORED
    assert ignored.report == "answer"
    assert ignored.error == (
        "the answer does not match the form: approved: 'yes' is not of type 'boolean'"
    )
    assert not decision.write


def test_a_copy_of_the_answer_is_silent_and_another_answer_is_ignored() -> None:
    state, _ = reduce(opened(approval()), answer({"approved": True}))
    copy = apply_batch(state, "t", {"x": 1}, [Delivery("x", 2, answer({"approved": True}))])
    assert copy.ignored == [] and not copy.write
    other = apply_batch(state, "t", {"x": 1}, [Delivery("x", 2, answer({"approved": False}, "bo"))])
    (ignored,) = [e.command for e in other.ignored]
    assert isinstance(ignored, EndAttempt)
    assert ignored.error == "the task was answered already, by human:ann"


def test_an_unreadable_assignee_fails_the_step_with_the_reason() -> None:
    state = new_execution("e1", approval(), {}, max_parallel_steps=4)
    state, _ = reduce(state, Started(at_ms=1_000))
    state, _ = reduce(state, StepCompleted("quote", 1, {}, at_ms=2_000))
    assert state.status is ExecutionStatus.FAILED
    assert state.steps["approval"].error is not None
    assert state.steps["approval"].error.startswith("AssigneeError: input.manager")


@pytest.mark.parametrize("on_timeout", ["fail", "skip", "continue"])
def test_a_task_times_out_as_on_timeout_says_never_early(on_timeout: str) -> None:
    state = opened(approval(timeout="10s", on_timeout=on_timeout))
    early, _ = reduce(state, Tick(now_ms=2_000 + 9_999))
    assert early is state
    after, _ = reduce(state, Tick(now_ms=2_000 + 10_000))
    step = after.steps["approval"]
    if on_timeout == "fail":
        assert after.status is ExecutionStatus.FAILED
        assert step.error == "TaskTimeout: no answer within 10s"
    elif on_timeout == "skip":
        assert step.status is StepStatus.SKIPPED
    else:
        assert step.status is StepStatus.COMPLETED and step.output["timed_out"] is True
    late, _ = reduce(after, answer({"approved": True}, at_ms=2_000 + 10_001))
    assert late is after, "an answer after the timeout changes nothing"


def test_a_rerun_opens_a_new_attempt_and_an_answer_to_the_old_one_is_ignored() -> None:
    state, _ = reduce(opened(approval()), answer({"approved": False}))
    state, _ = reduce(state, StepCompleted("order", 1, {}, at_ms=4_000))
    assert state.status is ExecutionStatus.COMPLETED
    rerun, commands = reduce(state, Replay("r1", ReplayAction.RERUN_FROM, 5_000, "approval"))
    assert OpenTask("approval", 2, "ann", None) in commands
    stale = apply_batch(rerun, "t", {"r": 1}, [Delivery("x", 9, answer({"approved": True}))])
    (ignored,) = [e.command for e in stale.ignored]
    assert isinstance(ignored, EndAttempt) and "current 2" in (ignored.error or "")
    done, _ = reduce(rerun, answer({"approved": True}, attempt=2))
    assert done.steps["approval"].output == {"approved": True}


Answer = tuple[bool, str]  # (fits the form, who)
ANSWERS = st.lists(st.tuples(st.booleans(), st.sampled_from(["ann", "bo", "cy"])), max_size=8)


@settings(max_examples=300, deadline=None)
@given(answers=ANSWERS, copies=st.lists(st.integers(0, 7), max_size=4))
def test_the_first_answer_that_fits_is_applied_once_whatever_comes_around_it(
    answers: list[Answer], copies: list[int]
) -> None:
    """Answers in any order, some missing the form, some sent twice: the first that
    fits completes the task, once; every other is ignored with a reason, or is a copy."""
    sent = [answer({"approved": True} if fits else {"approved": "?"}, who) for fits, who in answers]
    for index in copies:  # a redelivered or resent answer, later
        if index < len(sent):
            sent.append(sent[index])
    state = opened(approval())
    deliveries = [Delivery("x", offset, a) for offset, a in enumerate(sent, start=1)]
    decision = apply_batch(state, "t", {"x": 0}, deliveries)
    first = next((a for a in sent if a.answer == {"approved": True}), None)
    step = decision.state.steps["approval"]
    if first is None:
        assert step.status is StepStatus.RUNNING
        assert len(decision.ignored) == len(sent)
        return
    assert step.status is StepStatus.COMPLETED and step.worker == f"human:{first.answered_by}"
    completed = [
        e.command
        for e in decision.emissions
        if isinstance(e.command, EndAttempt) and e.command.outcome is AttemptOutcome.COMPLETED
    ]
    assert len(completed) == 1
    copies_of_winner = sum(1 for a in sent if a == first) - 1
    assert len(decision.ignored) == len(sent) - 1 - copies_of_winner
