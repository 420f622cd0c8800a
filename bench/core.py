"""Benchmark of the pure core: planning a 10,000-step DAG and reducer throughput.

    .venv/bin/python bench/core.py [--steps 10000] [--executions 100000]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc

from stepstream.workflows import (
    EmitStepReady,
    Started,
    StepCompleted,
    StepDefinition,
    WorkflowDefinition,
    build_definition,
    definition_to_dict,
    new_execution,
    plan,
    reduce,
    state_to_dict,
)


def random_dag(steps: int, seed: int = 7) -> WorkflowDefinition:
    rng = random.Random(seed)
    return WorkflowDefinition(
        "bench",
        1,
        "bench",
        tuple(
            StepDefinition(
                f"s{i}",
                "noop",
                tuple(f"s{d}" for d in rng.sample(range(i), min(i, rng.randint(0, 3)))),
            )
            for i in range(steps)
        ),
    )


def bench_planning(steps: int) -> None:
    raw = definition_to_dict(random_dag(steps))
    started = time.perf_counter()
    definition = build_definition(raw)  # parse + validate (cycle search included)
    validated_s = time.perf_counter() - started
    started = time.perf_counter()
    result = plan(definition)
    planned_s = time.perf_counter() - started
    print(
        f"planning  {steps} steps: validate {validated_s * 1e3:.1f} ms, "
        f"plan {planned_s * 1e3:.1f} ms ({len(result.levels)} levels, "
        f"max width {result.max_width}, critical path {len(result.critical_path)} steps)"
    )


MAINTENANCE = WorkflowDefinition(
    "maintenance-request",
    1,
    "maintenance",
    (
        StepDefinition("step-1", "noop"),
        StepDefinition("step-2", "noop", ("step-1",)),
        StepDefinition("step-3", "noop", ("step-1",)),
        StepDefinition("step-4", "noop", ("step-2", "step-3")),
    ),
)


def bench_reducer(executions: int) -> None:
    events = 0
    started = time.perf_counter()
    for number in range(executions):
        state = new_execution(f"e{number}", MAINTENANCE, {}, max_parallel_steps=10)
        state, commands = reduce(state, Started(0))
        events += 1
        pending = [c for c in commands if isinstance(c, EmitStepReady)]
        while pending:
            ready = pending.pop()
            state, commands = reduce(state, StepCompleted(ready.step_id, ready.attempt, None, 1))
            events += 1
            pending += [c for c in commands if isinstance(c, EmitStepReady)]
    elapsed = time.perf_counter() - started
    print(
        f"reducer   {executions} executions of the 4-step example: {events} events in "
        f"{elapsed:.2f} s = {events / elapsed:,.0f} events/s, "
        f"{executions / elapsed:,.0f} executions/s"
    )

    tracemalloc.start()
    state = new_execution("e", MAINTENANCE, {}, max_parallel_steps=10)
    state, _ = reduce(state, Started(0))
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"state     one running 4-step execution: ~{size} bytes in memory, "
        f"checkpoint dict with {len(str(state_to_dict(state)))} chars as text"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--executions", type=int, default=100_000)
    args = parser.parse_args()
    bench_planning(args.steps)
    bench_reducer(args.executions)


if __name__ == "__main__":
    main()
