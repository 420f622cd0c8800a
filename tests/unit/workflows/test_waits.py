"""Wait steps in the pure core: durations, the definition language, and timers that fire
once, never early, whatever order and how often the clock's ticks arrive."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows import (
    ArmTimer,
    AttemptOutcome,
    EmitStepReady,
    EndAttempt,
    ExecutionStatus,
    InvalidDefinition,
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepDefinition,
    StepStatus,
    Tick,
    Wait,
    WorkflowDefinition,
    announce,
    build_definition,
    definition_to_dict,
    new_execution,
    reduce,
    state_from_dict,
    state_to_dict,
)
from stepstream.workflows.durations import DurationError, iso, parse_duration, parse_instant
from stepstream.workflows.explain import explain
from stepstream.workflows.stalls import stall_deadline
from stepstream.workflows.timers import armed_timers, split_timer_key, timer_key, timers_until

EXAMPLES = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    ("written", "ms"),
    [
        ("30s", 30_000),
        ("15m", 900_000),
        ("2h", 7_200_000),
        ("7d", 604_800_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("PT2H", 7_200_000),
        ("P1DT12H", 129_600_000),
        ("P2W", 1_209_600_000),
        ("PT0.5S", 500),
    ],
)
def test_durations_are_read_as_written(written: str, ms: int) -> None:
    assert parse_duration(written) == ms


@pytest.mark.parametrize("written", ["2 hours", "", "P", "PT", "P1Y", "1.5h", "h", 30, "P1DT"])
def test_a_duration_that_is_not_one_says_what_is_accepted(written: object) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(written)


def test_instants_are_iso_with_a_zone_or_epoch_milliseconds() -> None:
    assert parse_instant("1970-01-01T00:00:05Z") == 5000
    assert parse_instant("1970-01-01T02:00:05+02:00") == 5000
    assert parse_instant(5000) == 5000
    assert iso(5000) == "1970-01-01T00:00:05.000Z"
    for bad, reason in [("1970-01-01T00:00:05", "time zone"), ("soon", "ISO"), (True, "ISO")]:
        with pytest.raises(DurationError, match=reason):
            parse_instant(bad)


def chain(*wait: Wait) -> WorkflowDefinition:
    """a; then a wait step per Wait, all after a; then z after them all."""
    waits = tuple(StepDefinition(f"t{n}", "wait", ("a",), wait=w) for n, w in enumerate(wait))
    last = StepDefinition("z", "noop", tuple(s.id for s in waits))
    return WorkflowDefinition("w", 1, "w", (StepDefinition("a", "noop"), *waits, last))


def test_a_definitions_waits_survive_its_written_form() -> None:
    definition = build_definition(
        {
            "id": "w",
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "t", "wait": {"for": "90m"}, "dependsOn": ["a"]},
                {"id": "u", "wait": {"until": "steps.a.at"}, "dependsOn": ["a"]},
            ],
        }
    )
    assert definition.step_by_id["t"] == StepDefinition("t", "wait", ("a",), wait=Wait(5_400_000))
    assert definition.step_by_id["u"].wait == Wait(until="steps.a.at")
    assert build_definition(definition_to_dict(definition)) == definition


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ({"wait": {"for": "soon"}}, "steps[1].wait.for: not a duration"),
        ({"wait": {"for": "0s"}}, "steps[1].wait.for: must be longer than 0"),
        ({"wait": {}}, "steps[1].wait: must be a mapping with one of 'for'"),
        ({"wait": {"for": "1s", "until": "input.x"}}, "steps[1].wait: must be a mapping"),
        ({"wait": {"until": "input.("}}, "steps[1] (t).wait.until: syntax error"),
        ({"wait": {"until": "steps.t.at"}}, "reads step 't', which it does not run after"),
        ({"wait": {"for": "1s"}, "retry": {"maxAttempts": 2}}, "takes no 'retry'"),
        ({"wait": {"for": "1s"}, "type": "noop"}, "steps[1] (t).type: a wait step's type is"),
    ],
)
def test_a_bad_wait_is_refused_with_its_location(step: dict[str, object], problem: str) -> None:
    raw = {"id": "w", "steps": [{"id": "a", "type": "noop"}, {"id": "t", **step}]}
    with pytest.raises(InvalidDefinition) as refused:
        build_definition(raw, step_types={"noop"})
    assert any(problem in str(p) for p in refused.value.problems), refused.value.problems


def started_at(definition: WorkflowDefinition, at_ms: int = 1_000, **data: object):  # type: ignore[no-untyped-def]
    state = new_execution("e", definition, data, max_parallel_steps=10)
    state, _ = reduce(state, Started(at_ms))
    return reduce(state, StepCompleted("a", 1, data.get("a_output", {}), at_ms))


def test_a_wait_arms_a_timer_instead_of_a_worker_and_completes_with_its_times() -> None:
    state, commands = started_at(chain(Wait(for_ms=2_000)))
    assert [c for c in commands if not isinstance(c, EndAttempt)] == [ArmTimer("t0", 1, 3_000)]
    assert armed_timers(state) == {timer_key(3_000, "t0", "e")}
    state, early = reduce(state, Tick(2_999))
    assert early == ()
    state, fired = reduce(state, Tick(3_250))
    end, ready = fired
    assert end == EndAttempt(
        "t0",
        1,
        AttemptOutcome.COMPLETED,
        output={
            "due_at": iso(3_000),
            "fired_at": iso(3_250),
            "due_at_ms": 3_000,
            "fired_at_ms": 3_250,
        },
        started_at_ms=1_000,
        finished_at_ms=3_250,
        released_at_ms=1_000,
    )
    assert isinstance(ready, EmitStepReady) and ready.step_id == "z"
    assert ready.inputs["steps"]["t0"]["fired_at_ms"] == 3_250
    assert armed_timers(state) == frozenset()
    assert reduce(state, Tick(9_000)) == (state, ())  # fired once


def test_until_reads_its_instant_when_the_step_is_settled_and_a_bad_one_fails_it() -> None:
    definition = chain(Wait(until="steps.a.at"))
    state, commands = started_at(definition, a_output={"at": "1970-01-01T00:00:07Z"})
    assert ArmTimer("t0", 1, 7_000) in commands
    state, commands = started_at(definition, a_output={"at": "tomorrow"})
    assert state.status is ExecutionStatus.FAILED
    assert state.steps["t0"].error == (
        "WaitError: until steps.a.at: not an ISO-8601 instant: 'tomorrow'"
    )


def test_an_announcement_or_a_resume_re_arms_the_same_due_time_and_a_rerun_a_new_one() -> None:
    state, _ = started_at(chain(Wait(for_ms=2_000)))
    assert ArmTimer("t0", 1, 3_000) in announce(state)
    resumed, commands = reduce(state, Replay("r1", ReplayAction.RESUME, at_ms=2_500))
    assert ArmTimer("t0", 1, 3_000) in commands
    assert resumed.steps["t0"].due_at_ms == 3_000
    done, _ = reduce(resumed, Tick(3_000))
    done, _ = reduce(done, StepCompleted("z", 1, {}, 3_100))
    assert done.status is ExecutionStatus.COMPLETED
    _, commands = reduce(done, Replay("r2", ReplayAction.RERUN_FROM, at_ms=10_000, step_id="t0"))
    assert ArmTimer("t0", 2, 12_000) in commands


def test_cancel_disarms_and_explain_and_the_watchdog_know_the_due_time() -> None:
    state, _ = started_at(chain(Wait(for_ms=60_000)))
    assert explain(state, 31_000)["t0"] == "waiting for its timer, due at 00:01:01 UTC (in 30 s)"
    assert stall_deadline(state, margin_ms=5_000) == 66_000  # not the 30 s default timeout
    cancelled, _ = reduce(state, Replay("c", ReplayAction.CANCEL, at_ms=2_000, reason="no"))
    assert armed_timers(cancelled) == frozenset()


def test_a_waiting_checkpoint_keeps_its_due_time() -> None:
    state, _ = started_at(chain(Wait(for_ms=2_000)))
    read = state_from_dict(state_to_dict(state))
    assert read.steps["t0"].due_at_ms == 3_000 and read.steps["t0"].status is StepStatus.RUNNING


def test_timer_keys_sort_by_due_time_and_read_back() -> None:
    keys = [timer_key(due, "t", "e") for due in (10, 9_999, 1_000_000)]
    assert keys == sorted(keys)
    assert split_timer_key(keys[1]) == (9_999, "t", "e")
    assert timer_key(9_999, "t", "e") < timers_until(9_999) <= timer_key(10_000, "t", "e")
    assert split_timer_key("#retire/0000000000001/e") is None


@given(
    waits=st.lists(st.integers(1, 5_000), min_size=1, max_size=4),
    ticks=st.lists(st.integers(0, 12_000), max_size=30),
)
@EXAMPLES
def test_every_timer_fires_once_never_early_whatever_the_ticks(
    waits: list[int], ticks: list[int]
) -> None:
    """Ticks in any order, repeated, early or late; then one past every due time."""
    state, _ = started_at(chain(*(Wait(for_ms=w) for w in waits)))
    fired: Counter[str] = Counter()
    for now in [*ticks, 20_000]:
        state, commands = reduce(state, Tick(now))
        for command in commands:
            if isinstance(command, EndAttempt):
                fired[command.step_id] += 1
                assert command.output["fired_at_ms"] == now
                assert now >= 1_000 + waits[int(command.step_id[1:])]  # never early
    assert fired == {f"t{n}": 1 for n in range(len(waits))}  # each exactly once
    assert armed_timers(state) == frozenset()
    assert state.steps["z"].status is StepStatus.RUNNING
