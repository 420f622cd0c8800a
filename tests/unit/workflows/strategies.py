"""Hypothesis strategies and a driver that runs an execution to its end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st

from stepstream.workflows import (
    EmitStepReady,
    Event,
    ExecutionState,
    StepCompleted,
    StepDefinition,
    StepStatus,
    WorkflowDefinition,
    new_execution,
    reduce,
)
from stepstream.workflows.execution import Started


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 20) -> WorkflowDefinition:
    """A random DAG: step i depends on some of the steps before it; listed in any order."""
    count = draw(st.integers(1, max_steps))
    steps = []
    for index in range(count):
        deps = draw(st.lists(st.integers(0, index - 1), unique=True, max_size=4)) if index else []
        steps.append(StepDefinition(f"s{index}", "noop", tuple(f"s{d}" for d in deps)))
    listed = draw(st.permutations(steps))
    return WorkflowDefinition("random", 1, "random", tuple(listed))


@dataclass
class Run:
    """What a driver saw while running an execution to its end."""

    state: ExecutionState
    events: list[Event] = field(default_factory=list)
    commands: list[object] = field(default_factory=list)
    ready_order: list[str] = field(default_factory=list)
    max_running: int = 0


def output_of(step_id: str) -> dict[str, str]:
    return {"result": f"out-{step_id}"}


def run_all_succeed(
    definition: WorkflowDefinition,
    choose: Callable[[int], int],
    *,
    limit: int = 3,
    parallel: bool = True,
) -> Run:
    """Start, then complete one running step at a time, picked by `choose`."""
    state = new_execution(
        "exec-1", definition, {"k": 1}, max_parallel_steps=limit, parallel_enabled=parallel
    )
    return drive(Run(state), Started(at_ms=0), choose)


def drive(run: Run, event: Event, choose: Callable[[int], int]) -> Run:
    """Apply `event`, then complete one running step at a time until nothing runs.

    Asserts the invariants a user relies on at every step: a step is released only after
    all its dependencies completed, with their outputs as inputs, never more than `limit`
    steps are outstanding, and no ready step waits while a slot is free.
    """
    definition = run.state.definition
    running: list[EmitStepReady] = []
    while True:
        run.events.append(event)
        run.state, commands = reduce(run.state, event)
        run.commands += commands
        # Work-conserving: a step never waits in the queue while a slot is free.
        assert not run.state.queue or run.state.outstanding == run.state.max_outstanding
        for command in commands:
            if isinstance(command, EmitStepReady):
                deps = definition.step_by_id[command.step_id].depends_on
                done = {d for d in deps if run.state.steps[d].status is StepStatus.COMPLETED}
                assert done == set(deps), f"{command.step_id} released before {deps}"
                assert command.inputs == {
                    "input": {"k": 1},
                    "steps": {d: output_of(d) for d in deps},
                }
                running.append(command)
                run.ready_order.append(command.step_id)
        run.max_running = max(run.max_running, len(running))
        if not running:
            return run
        ready = running.pop(choose(len(running)))
        event = StepCompleted(ready.step_id, ready.attempt, output_of(ready.step_id), at_ms=0)
