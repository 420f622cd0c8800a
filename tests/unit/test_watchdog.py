"""The watchdog's decisions over real reducer states: which executions it announces
again, when, and how often. (Its timer and the emission are the coordinator's.)"""

from __future__ import annotations

from typing import Any

from stepstream.agents.watchdog import MAX_ANNOUNCED_PER_LOOK, Watchdog
from stepstream.workflows import (
    Command,
    EmitStepReady,
    ExecutionState,
    Started,
    StepCompleted,
    StepDefinition,
    WorkflowDefinition,
    new_execution,
    reduce,
)
from stepstream.workflows.stalls import waiting_on

CHAIN = WorkflowDefinition(
    "chain",
    1,
    "chain",
    (StepDefinition("a", "noop", timeout_ms=1_000), StepDefinition("b", "noop", ("a",))),
)


def running(at_ms: int) -> ExecutionState:
    state = new_execution("e-1", CHAIN, {}, max_parallel_steps=2)
    state, _ = reduce(state, Started(at_ms=at_ms))
    return state


async def check(watchdog: Watchdog, now: int, state: ExecutionState) -> list[Command]:
    emitted: list[Command] = []

    def load(key: bytes) -> tuple[ExecutionState, dict[str, Any]] | None:
        return (state, {}) if key == b"e-1" else None

    async def emit(_: ExecutionState, __: dict[str, Any], command: Command) -> None:
        emitted.append(command)

    await watchdog.check(now, load, emit)
    return emitted


async def test_a_step_silent_past_its_timeout_and_margin_is_announced_again() -> None:
    watchdog = Watchdog(margin_ms=500)
    state = running(at_ms=10_000)
    watchdog.track(b"e-1", state)
    assert await check(watchdog, 11_499, state) == []  # within timeout + margin
    (ready,) = await check(watchdog, 11_500, state)
    assert isinstance(ready, EmitStepReady) and (ready.step_id, ready.attempt) == ("a", 1)
    assert watchdog.resumed == 1
    # Not again at every look: it waits another timeout plus margin.
    assert await check(watchdog, 12_000, state) == []
    assert len(await check(watchdog, 13_000, state)) == 1


async def test_progress_moves_the_deadline_and_an_ended_execution_is_forgotten() -> None:
    watchdog = Watchdog(margin_ms=500)
    state = running(at_ms=10_000)
    watchdog.track(b"e-1", state)
    state, _ = reduce(state, StepCompleted("a", 1, {}, at_ms=11_400))
    watchdog.track(b"e-1", state)  # b released at 11,400, default timeout 30 s
    assert await check(watchdog, 12_000, state) == []
    assert [w.step_id for w in waiting_on(state, 500)] == ["b"]
    state, _ = reduce(state, StepCompleted("b", 1, {}, at_ms=12_500))
    watchdog.track(b"e-1", state)
    assert watchdog.deadlines == {}


def test_the_stall_deadline_is_the_earliest_of_the_waiting_steps() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from stepstream.workflows.stalls import stall_deadline
    from tests.unit.workflows.strategies import dags, run_all_succeed

    @given(dags(), st.data())
    def check(definition: WorkflowDefinition, data: st.DataObject) -> None:
        run = run_all_succeed(definition, lambda n: data.draw(st.integers(0, n - 1)))
        state = new_execution("exec-1", definition, {"k": 1}, max_parallel_steps=3)
        for event in run.events[: data.draw(st.integers(0, len(run.events)))]:
            state, _ = reduce(state, event)
        waiting = waiting_on(state, 700)
        assert stall_deadline(state, 700) == (waiting[0].deadline_ms if waiting else None)

    check()


def test_a_heartbeat_moves_a_queue_steps_stall_deadline() -> None:
    """A long queue step whose worker heartbeats is not stalled: the watchdog must not
    release its task again while the worker is on it."""
    from stepstream.workflows import Heartbeat
    from stepstream.workflows.stalls import stall_deadline

    remote = StepDefinition("a", "RENDER", queue="reports", timeout_ms=1_000)
    definition = WorkflowDefinition("remote", 1, "remote", (remote,))
    state = new_execution("e-1", definition, {}, max_parallel_steps=1)
    state, _ = reduce(state, Started(at_ms=0))
    assert stall_deadline(state, 500) == 1_500
    state, _ = reduce(state, Heartbeat("a", 1, at_ms=900))
    assert stall_deadline(state, 500) == 2_400
    assert waiting_on(state, 500)[0].deadline_ms == 2_400


async def test_a_look_announces_a_bounded_number_the_longest_stalled_first() -> None:
    watchdog = Watchdog(margin_ms=0)
    states = {}
    for n in range(MAX_ANNOUNCED_PER_LOOK + 50):
        state = new_execution(f"e-{n}", CHAIN, {}, max_parallel_steps=2)
        state, _ = reduce(state, Started(at_ms=10_000 - n))  # e-249 stalled longest
        states[f"e-{n}".encode()] = state
        watchdog.track(f"e-{n}".encode(), state)
    announced: list[str] = []

    def load(key: bytes) -> tuple[ExecutionState, dict[str, Any]] | None:
        return states[key], {}

    async def emit(state: ExecutionState, _: dict[str, Any], command: Command) -> None:
        announced.append(state.execution_id)

    await watchdog.check(20_000, load, emit)
    assert len(announced) == MAX_ANNOUNCED_PER_LOOK
    assert announced[0] == f"e-{MAX_ANNOUNCED_PER_LOOK + 49}" and "e-0" not in announced
    await watchdog.check(20_000, load, emit)  # the rest, at the next look
    assert len(announced) == MAX_ANNOUNCED_PER_LOOK + 50
