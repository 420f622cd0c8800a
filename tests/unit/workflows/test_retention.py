"""The retention index's keys and the decision a due key stands for."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from stepstream.workflows import ExecutionStatus, StepDefinition, WorkflowDefinition, new_execution
from stepstream.workflows.retention import (
    Retirement,
    retire_due,
    retire_key,
    retire_until,
    retirement,
    running_key,
    split_retire_key,
)

IDS = st.from_regex(r"[a-z0-9][a-z0-9.:_@-]{0,30}", fullmatch=True)
TIMES = st.integers(0, 10**13 - 2)
DEFINITION = WorkflowDefinition("w", 1, "", (StepDefinition("a", "noop"),))
HOUR = 3_600_000


def ended(at_ms: int, status: ExecutionStatus = ExecutionStatus.COMPLETED):  # type: ignore[no-untyped-def]
    state = new_execution("x1", DEFINITION, {}, max_parallel_steps=4)
    return replace(state, status=status, finished_at_ms=at_ms)


@given(IDS, TIMES)
def test_a_retire_key_names_its_due_time_and_execution(execution_id: str, due: int) -> None:
    assert split_retire_key(retire_key(due, execution_id)) == (due, execution_id)
    assert split_retire_key(running_key(execution_id)) is None


@given(st.lists(st.tuples(TIMES, IDS), min_size=2, max_size=20), TIMES)
def test_keys_sort_by_due_time_and_a_scan_to_now_takes_exactly_the_due(
    entries: list[tuple[int, str]], now: int
) -> None:
    keys = sorted(retire_key(due, execution_id) for due, execution_id in entries)
    dues = [split_retire_key(key)[0] for key in keys]  # type: ignore[index]
    assert dues == sorted(dues)
    taken = [key for key in keys if key < retire_until(now)]
    assert sorted(due for due, _ in entries if due <= now) == [
        split_retire_key(key)[0]
        for key in taken  # type: ignore[index]
    ]


def test_a_running_execution_is_never_due() -> None:
    running = replace(ended(0), status=ExecutionStatus.RUNNING, finished_at_ms=None)
    assert retire_due(running, HOUR) is None
    assert retirement(running, 10 * HOUR, HOUR) is Retirement.REOPENED


def test_an_ended_execution_leaves_once_its_retention_is_over() -> None:
    for status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        state = ended(5 * HOUR, status)
        assert retire_due(state, HOUR) == 6 * HOUR
        assert retirement(state, 6 * HOUR - 1, HOUR) is Retirement.KEEP
        assert retirement(state, 6 * HOUR, HOUR) is Retirement.DELETE
    assert retirement(None, 6 * HOUR, HOUR) is Retirement.GONE
