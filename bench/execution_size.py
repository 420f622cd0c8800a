"""What one coordinator event costs as workflows grow: CPU and changelog bytes per event
for a 4-step diamond, a fan-out and a chain of 200 and 1,000 steps, and a `forEach` over
10 to 10,000 items (read from a step's output, as a list known only at run time).

    .venv/bin/python bench/execution_size.py [--executions 20]

Each event goes through what the coordinator does with a checkpoint (agents/coordinator.py,
`apply_events`, and agents/checkpoints.py, `write`): take the running execution's state
as last written (kept in memory; `--decode` reads the checkpoint back each time, as after
a recovery: definitions memoised, as in the worker), reduce, find the changed steps and
encode the records that store it (one for a small execution; a header with the recent
changes and, now and then, parts for a large one). No broker: this is the part of an
event's cost that depends on the workflow's size.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from stepstream.streams.events import from_json, to_json_bytes
from stepstream.workflows import (
    EmitStepReady,
    Started,
    StepCompleted,
    WorkflowDefinition,
    build_definition,
    new_execution,
    reduce,
    state_from_dict,
)
from stepstream.workflows.checkpoint import DefinitionMemo, checkpoint_writes, merge_parts
from stepstream.workflows.state import changed_steps

ORIGIN = {
    "execution_id": "0b7c7f3e-1f6a-4f8e-9c7d-2a1b3c4d5e6f",
    "workflow_id": "w",
    "workflow_version": 1,
    "tenant_id": "tenant-1",
    "user_id": "user-1",
}


def fan_out(width: int) -> dict[str, Any]:
    middle = [{"id": f"m{i}", "type": "noop", "dependsOn": ["root"]} for i in range(width - 2)]
    join = {"id": "join", "type": "noop", "dependsOn": [m["id"] for m in middle]}
    return {
        "id": f"fan-{width}",
        "version": 1,
        "steps": [{"id": "root", "type": "noop"}, *middle, join],
    }


def chain(length: int) -> dict[str, Any]:
    steps = [{"id": "s0", "type": "noop"}]
    steps += [{"id": f"s{i}", "type": "noop", "dependsOn": [f"s{i - 1}"]} for i in range(1, length)]
    return {"id": f"chain-{length}", "version": 1, "steps": steps}


def for_each(items: int) -> dict[str, Any]:
    """read -> each (one instance per item of read's output) -> after."""
    return {
        "id": f"for-each-{items}",
        "version": 1,
        "steps": [
            {"id": "read", "type": "noop"},
            {"id": "each", "type": "noop", "forEach": "steps.read.items", "dependsOn": ["read"]},
            {"id": "after", "type": "noop", "dependsOn": ["each"]},
        ],
    }


def output_of(step_id: str, definition: WorkflowDefinition) -> Any:
    """A step's report: `read` gives a for-each shape its items."""
    if step_id == "read" and definition.id.startswith("for-each-"):
        return {"items": [{"tenant": n} for n in range(int(definition.id.rsplit("-", 1)[1]))]}
    return {"ok": True}


DIAMOND = {
    "id": "diamond",
    "version": 1,
    "steps": [
        {"id": "a", "type": "noop"},
        {"id": "b", "type": "noop", "dependsOn": ["a"]},
        {"id": "c", "type": "noop", "dependsOn": ["a"]},
        {"id": "d", "type": "noop", "dependsOn": ["b", "c"]},
    ],
}


def run(
    definition: WorkflowDefinition, memo: DefinitionMemo, decode: bool
) -> tuple[int, int, float]:
    """One execution to its end; (events, changelog bytes, CPU seconds)."""
    current = new_execution(ORIGIN["execution_id"], definition, {"k": 1}, max_parallel_steps=10)
    memo[(definition.id, definition.version)] = definition  # the partition's copy, read once
    stored: dict[int | None, bytes] = {}
    delta: frozenset[str] = frozenset()
    previous = None
    pending = [Started(at_ms=1)]
    events = written = 0
    cpu = 0.0
    while pending:
        event = pending.pop(0)
        began = time.process_time()
        if decode and stored:
            parts: dict[int, Any] = {n: from_json(v) for n, v in stored.items() if n is not None}
            header = from_json(stored[None])["state"]
            current = state_from_dict(merge_parts(header, parts), memo)
            delta = frozenset(header["steps"]) if "parts" in header else frozenset()
            previous = current  # as the worker does with a checkpoint it loads
        current, commands = reduce(current, event)
        # What Checkpoints.write does: find the changed steps, write the records.
        if previous is None:
            changed: Any = current.steps
        else:
            changed = changed_steps(previous.steps, current.steps)
        writes, delta = checkpoint_writes(current, delta, changed)
        applied = {"x": 1, "c": events}
        for part, value in writes:
            record = (
                {"state": value, "origin": ORIGIN, "applied": applied} if part is None else value
            )
            stored[part] = to_json_bytes(record)
            written += len(stored[part])
        previous = current
        cpu += time.process_time() - began
        events += 1
        pending += [
            StepCompleted(c.step_id, c.attempt, output_of(c.step_id, definition), at_ms=2)
            for c in commands
            if isinstance(c, EmitStepReady)
        ]
    return events, written, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--decode", action="store_true", help="decode every checkpoint")
    args = parser.parse_args()
    shapes = [("diamond, 4 steps", DIAMOND)]
    for size in (200, 1_000):
        shapes += [(f"fan-out, {size} steps", fan_out(size)), (f"chain, {size} steps", chain(size))]
    for items in (10, 100, 1_000, 10_000):
        shapes.append((f"forEach, {items} items", for_each(items)))
    for name, raw in shapes:
        definition = build_definition(raw)
        memo: DefinitionMemo = {}
        totals = [run(definition, memo, args.decode) for _ in range(args.executions)]
        events = sum(t[0] for t in totals)
        written = sum(t[1] for t in totals)
        cpu = sum(t[2] for t in totals)
        print(
            f"{name:>20}: {cpu / events * 1e6:8.0f} us and {written / events / 1024:7.1f} KiB"
            f" of changelog per event, {written / args.executions / 1024 / 1024:7.2f} MiB"
            " per execution"
        )


if __name__ == "__main__":
    main()
