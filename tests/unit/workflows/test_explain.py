"""`explain`: why each unfinished step is not running, from the checkpoint alone."""

from __future__ import annotations

from stepstream.workflows import (
    Replay,
    ReplayAction,
    Started,
    StepCompleted,
    StepFailed,
    parse_definition,
    reduce,
)
from stepstream.workflows.execution import new_execution
from stepstream.workflows.explain import explain

DEFINITION = parse_definition(
    """
id: explained
version: 1
steps:
  - {id: a, type: noop}
  - {id: b, type: noop, retry: {maxAttempts: 3, initialBackoffMs: 5000, jitter: 0}}
  - {id: c, type: noop}
  - {id: d, type: noop, dependsOn: [a, b]}
  - {id: e, type: noop, dependsOn: [a], when: 'steps.a.go'}
""",
    "yaml",
)


def test_each_unfinished_step_says_what_it_waits_for() -> None:
    state = new_execution("x", DEFINITION, {}, max_parallel_steps=2)
    state, _ = reduce(state, Started(at_ms=0))  # a and b run; c is held by the limit
    state, _ = reduce(state, StepFailed("b", 1, "Timeout: slow", True, at_ms=1_000))
    answers = explain(state, now_ms=42_000)
    assert answers["a"] == "running, attempt 1, for 42 s"
    assert answers["b"].startswith("waiting for its retry at 00:00:06 UTC (attempt 1 failed")
    assert answers["c"] == "held by the parallel limit (2 of 2 outstanding)"
    assert answers["d"].startswith("waiting on a (running, attempt 1, for 42 s), b (retry at")
    assert answers["e"] == "waiting on a (running, attempt 1, for 42 s)"
    state, _ = reduce(state, StepCompleted("a", 1, {"go": False}, at_ms=43_000))
    assert explain(state, 44_000, "e") == {
        "e": "skipped: condition false: steps.a.go (saw steps.a.go = false)"
    }
    assert explain(state, 44_000, "a") == {"a": "completed (attempt 1)"}
    cancelled, _ = reduce(state, Replay("r", ReplayAction.CANCEL, at_ms=45_000, reason="dup"))
    assert explain(cancelled, 46_000)["d"] == "cancelled: dup"
