"""Waits for events in the pure core: the definition language, the reducer's subscribe,
complete, time out and refuse, and the correlator's matching, whatever the order of
events and waits, their copies, and how early the events come."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    ArmTimer,
    EventArrived,
    ExecutionState,
    ExecutionStatus,
    InvalidDefinition,
    OnTimeout,
    RefuseEvent,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepStatus,
    Subscribe,
    Tick,
    Unsubscribe,
    WaitFor,
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
from stepstream.workflows.correlation import (
    Address,
    Correlation,
    HeldEvent,
    Waiter,
    expires_at,
    expiry_key,
    split_expiry_key,
)
from stepstream.workflows.explain import explain
from stepstream.workflows.stalls import stall_deadline
from stepstream.workflows.timers import armed_timers

EXAMPLES = settings(max_examples=300, deadline=None)


def accept(timeout: str | None = None, on_timeout: str | None = None) -> WorkflowDefinition:
    """notify; then wait for technician-accepted by input.request; then assign."""
    wait: dict[str, Any] = {"event": "technician-accepted", "correlationKey": "input.request"}
    step: dict[str, Any] = {"id": "accepted", "waitFor": wait, "dependsOn": ["notify"]}
    if timeout is not None:
        wait["timeout"] = timeout
    if on_timeout is not None:
        step["onTimeout"] = on_timeout
    return build_definition(
        {
            "id": "accept",
            "steps": [
                {"id": "notify", "type": "noop"},
                step,
                {
                    "id": "assign",
                    "type": "noop",
                    "dependsOn": ["accepted"],
                    "when": "not has(steps.accepted.timed_out)",
                },
            ],
        }
    )


def waiting(definition: WorkflowDefinition, **data: Any) -> tuple[ExecutionState, tuple[Any, ...]]:
    """Started at 1 000 and notify completed: the wait has begun."""
    state = new_execution("e", definition, {"request": "r-1", **data}, max_parallel_steps=10)
    state, _ = reduce(state, Started(1_000))
    return reduce(state, StepCompleted("notify", 1, {}, 1_000))


def arrived(event_id: str = "ev-1", attempt: int = 1, **payload: Any) -> EventArrived:
    return EventArrived(
        "accepted", attempt, "technician-accepted", event_id, payload, 2_000, "key", "r-1"
    )


def test_a_wait_for_an_event_survives_its_written_form_and_a_checkpoint() -> None:
    definition = accept("2h", "continue")
    step = definition.step_by_id["accepted"]
    assert step.type == "event"
    assert step.wait_for == WaitFor(
        "technician-accepted", "input.request", 7_200_000, OnTimeout.CONTINUE
    )
    assert build_definition(definition_to_dict(definition)) == definition
    state, _ = waiting(definition)
    assert state_from_dict(state_to_dict(state)) == state


@pytest.mark.parametrize(
    ("wait", "problem"),
    [
        ({"waitFor": {"correlationKey": "input.k"}}, "steps[1].waitFor.event: an event name is"),
        ({"waitFor": {"event": "a b"}}, "steps[1].waitFor.event: an event name is required"),
        ({"waitFor": {"event": "e", "timeout": "soon"}}, "steps[1].waitFor.timeout: not a"),
        ({"waitFor": {"event": "e"}, "onTimeout": "skip"}, "onTimeout is set, but the wait"),
        ({"waitFor": {"event": "e", "timeout": "1s"}, "onTimeout": "wait"}, "must be one of"),
        ({"type": "noop", "onTimeout": "skip"}, "only a step that waits (waitFor, human)"),
        ({"waitFor": {"event": "e", "correlationKey": "steps.t.k"}}, "reads step 't', which"),
        ({"waitFor": {"event": "e", "correlationKey": "input.("}}, "correlationKey: syntax"),
        ({"waitFor": {"event": "e"}, "queue": "q"}, "a waiting step takes no 'queue'"),
        ({"waitFor": {"event": "e"}, "wait": {"for": "1s"}}, "one of wait, waitFor, human"),
        ({"waitFor": {"event": "e"}, "type": "noop"}, "a step that waits for an event has type"),
    ],
)
def test_a_bad_wait_for_an_event_is_refused_with_its_location(
    wait: dict[str, Any], problem: str
) -> None:
    raw = {
        "id": "w",
        "steps": [{"id": "a", "type": "noop"}, {"id": "t", "dependsOn": ["a"], **wait}],
    }
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw, step_types={"noop"})
    assert any(problem in str(p) for p in refused.value.problems), refused.value.problems


def test_a_wait_subscribes_instead_of_running_and_its_event_is_its_output() -> None:
    state, commands = waiting(accept())
    assert Subscribe("accepted", 1, "technician-accepted", "r-1") in commands
    assert not [c for c in commands if isinstance(c, ArmTimer)], "no timeout: no timer"
    assert stall_deadline(state, 30_000) is None, "a wait with no timeout never stalls"
    state, done = reduce(state, arrived(technician="tech-7"))
    assert state.steps["accepted"].output == {"technician": "tech-7"}
    assert state.steps["accepted"].worker == "event:ev-1"
    assert Unsubscribe("accepted", 1, "technician-accepted", "r-1") in done
    assert state.steps["assign"].status is StepStatus.RUNNING


def test_a_copy_of_the_event_is_applied_once_and_another_event_is_refused() -> None:
    state, _ = waiting(accept())
    state, _ = reduce(state, arrived("ev-1"))
    decision = apply_batch(
        state,
        "t",
        {"x": 5},
        [Delivery("x", 6, arrived("ev-1")), Delivery("x", 7, arrived("ev-2"))],
    )
    assert not decision.write
    (refusal,) = [e.command for e in decision.emissions]
    assert isinstance(refusal, RefuseEvent) and refusal.event.event_id == "ev-2"
    assert refusal.reason == "the step is completed, not waiting"


def test_an_unreadable_correlation_key_fails_the_step_with_the_reason() -> None:
    state, commands = waiting(accept(), request={"nested": 1})
    assert state.status is ExecutionStatus.FAILED
    assert state.failure is not None
    assert state.failure.error.startswith("CorrelationKeyError: input.request: gave {")
    assert not [c for c in commands if isinstance(c, Subscribe)]


@pytest.mark.parametrize(
    ("on_timeout", "status", "assign"),
    [
        ("continue", StepStatus.COMPLETED, StepStatus.SKIPPED),  # `when` branches on it
        ("skip", StepStatus.SKIPPED, StepStatus.SKIPPED),
        ("fail", StepStatus.FAILED, StepStatus.WAITING),
    ],
)
def test_a_timeout_ends_the_wait_as_on_timeout_says_never_early(
    on_timeout: str, status: StepStatus, assign: StepStatus
) -> None:
    state, commands = waiting(accept("2s", on_timeout))
    assert ArmTimer("accepted", 1, 3_000) in commands
    assert armed_timers(state)
    assert "until" in explain(state, 1_500)["accepted"]
    state, early = reduce(state, Tick(2_999))
    assert early == ()
    state, ended = reduce(state, Tick(3_000))
    assert state.steps["accepted"].status is status
    assert state.steps["assign"].status is assign
    assert Unsubscribe("accepted", 1, "technician-accepted", "r-1") in ended
    if on_timeout == "continue":
        assert state.steps["accepted"].output["timed_out"] is True
    if on_timeout == "fail":
        assert state.failure is not None
        assert state.failure.error == "EventTimeout: no 'technician-accepted' event within 2s"
    state, late = reduce(state, arrived())
    assert late == () and armed_timers(state) == frozenset()


def test_cancel_ends_the_wait_and_a_rerun_subscribes_a_new_attempt() -> None:
    state, _ = waiting(accept())
    cancelled, commands = reduce(state, Replay("r1", ReplayAction.CANCEL, 1_500, reason="no"))
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert Unsubscribe("accepted", 1, "technician-accepted", "r-1") in commands
    state, _ = reduce(state, arrived())
    state, _ = reduce(state, StepCompleted("assign", 1, {}, 2_500))
    assert state.status is ExecutionStatus.COMPLETED
    rerun, commands = reduce(state, Replay("r2", ReplayAction.RERUN_FROM, 5_000, "accepted"))
    assert Subscribe("accepted", 2, "technician-accepted", "r-1") in commands
    assert Subscribe("accepted", 2, "technician-accepted", "r-1") in announce(rerun)
    _, refused = reduce(rerun, arrived(attempt=1))
    assert refused == ()  # the batch refuses it: not the current attempt


# The correlator ------------------------------------------------------------------------


def event(event_id: str, sent_at: int = 0, ttl: int = 10_000) -> HeldEvent:
    return HeldEvent(event_id, "{}", sent_at, sent_at + ttl)


def waiter(execution_id: str) -> Waiter:
    return Waiter(execution_id, "accepted", 1, {"execution_id": execution_id})


def test_an_early_event_is_held_and_goes_to_the_first_wait_that_begins() -> None:
    correlation = Correlation()
    assert correlation.offer(event("a"), 0).outcome == "held"
    assert correlation.offer(event("a"), 1).outcome == "duplicate"
    (delivery,) = correlation.begin(waiter("x1"))
    assert delivery.event.event_id == "a"
    assert correlation.begin(waiter("x2")) == []
    assert correlation.begin(waiter("x1")) == [delivery], "began again: the same delivery"
    assert Correlation.from_json(correlation.to_json()) == correlation


def test_a_refused_event_goes_to_the_next_wait_or_back_to_being_held() -> None:
    correlation = Correlation()
    correlation.begin(waiter("x1"))
    correlation.begin(waiter("x2"))
    correlation.offer(event("a"), 0)
    offered = correlation.refuse("x1/accepted/1", "a", 5)
    assert [d.waiter.execution_id for d in offered.deliveries] == ["x2"]
    again = correlation.refuse("x2/accepted/1", "a", 5)
    assert again.outcome == "held" and [e.event_id for e in correlation.held] == ["a"]
    assert correlation.refuse("x2/accepted/1", "a", 5).outcome == "duplicate"
    assert correlation.expire(10_000) == [event("a")], "unmatched at the end of its life"
    assert correlation.empty


def test_expiry_keys_sort_by_due_time_and_read_back() -> None:
    address = Address("t/1", "n", "key", "k/with/slashes")
    assert split_expiry_key(expiry_key(42, address)) == (42, address)
    assert expiry_key(9, address) < expiry_key(10, address)
    assert split_expiry_key(b"#timer/1") is None
    assert expires_at(1_000, None, 60_000, 120_000) == 61_000
    assert expires_at(1_000, 10**9, 60_000, 120_000) == 121_000, "capped at the most"


Step = tuple[str, str]  # ("event", id) | ("begin", execution) | ("end", execution) | ...


@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("event"), st.sampled_from("abcd")),
            st.tuples(st.just("begin"), st.sampled_from(["x1", "x2", "x3"])),
            st.tuples(st.just("refuse"), st.sampled_from(["x1", "x2", "x3"])),
            st.tuples(st.just("expire"), st.just("")),
        ),
        max_size=40,
    )
)
@EXAMPLES
def test_no_event_is_lost_or_given_to_two_waits_whatever_the_order(steps: list[Step]) -> None:
    """Events, their copies and early arrivals, waits that begin (again), refusals and
    expiries in any order: each event is, at every moment, in exactly one place (held,
    matched to one wait, or reported unmatched), and a wait holds at most one event."""
    correlation = Correlation()
    clock = 0
    sent: set[str] = set()
    unmatched: Counter[str] = Counter()
    delivered: set[str] = set()  # went to a wait once (then forgotten after their life)
    for kind, value in steps:
        clock += 100
        if kind == "event":
            outcome = correlation.offer(event(value, clock, ttl=1_000), clock)
            sent.add(value)
            unmatched.update(e.event_id for e in outcome.unmatched)
        elif kind == "begin":
            correlation.begin(waiter(value))
        elif kind == "refuse":
            taken = [d for d in correlation.matched if d.waiter.execution_id == value]
            for delivery in taken:
                refused = correlation.refuse(
                    delivery.waiter.subscription, delivery.event.event_id, clock
                )
                unmatched.update(e.event_id for e in refused.unmatched)
        else:
            unmatched.update(e.event_id for e in correlation.expire(clock))
        held = [e.event_id for e in correlation.held]
        matched = [d.event.event_id for d in correlation.matched]
        assert len(held) == len(set(held)) and not set(held) & set(matched)
        assert len(matched) == len(set(matched)), "an event goes to one wait"
        waits = [d.waiter.subscription for d in correlation.matched]
        assert len(waits) == len(set(waits)), "a wait takes one event"
        assert not {w.subscription for w in correlation.waiting} & set(waits)
        assert not (correlation.held and correlation.waiting), "nothing held while one waits"
        delivered.update(matched)
        lost = sent - set(held) - set(matched) - set(unmatched) - delivered
        assert not lost, f"events neither held, delivered nor reported unmatched: {lost}"
