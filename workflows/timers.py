"""The due-time index of wait steps' timers, kept beside the checkpoints.

`#timer/<due ms, 13 digits>/<step id>/<execution id>`: one key per armed timer of a
running execution. Keys sort by due time, so a sweep reads from the first key up to
now and no further: what it reads is what is due, never every timer, let alone every
checkpoint, and a worker that takes a partition over has nothing to re-arm (the keys
came with the partition's changelog). Step ids hold no `/`, and execution ids come
last, as in the other indexes (`stepstream.workflows.retention`). Pure: no I/O.
"""

from __future__ import annotations

from stepstream.workflows.retention import DUE_DIGITS
from stepstream.workflows.state import ExecutionState, ExecutionStatus, StepStatus

TIMER_PREFIX = "#timer/"


def timer_key(due_ms: int, step_id: str, execution_id: str) -> str:
    return f"{TIMER_PREFIX}{due_ms:0{DUE_DIGITS}d}/{step_id}/{execution_id}"


def timers_until(now_ms: int) -> str:
    """The first key past every timer key due at `now_ms`: a sweep's end."""
    return f"{TIMER_PREFIX}{now_ms + 1:0{DUE_DIGITS}d}/"


def split_timer_key(key: str) -> tuple[int, str, str] | None:
    """(due ms, step id, execution id) of a timer key; None for any other key."""
    if not key.startswith(TIMER_PREFIX):
        return None
    parts = key[len(TIMER_PREFIX) :].split("/", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not all(parts[1:]):
        return None
    return int(parts[0]), parts[1], parts[2]


def armed_timers(state: ExecutionState) -> frozenset[str]:
    """The timer keys the state stands on: its running wait steps' timers while the
    execution runs (an execution that ended, cancelled say, holds none)."""
    if state.status is not ExecutionStatus.RUNNING or not state.definition.has_waits:
        return frozenset()
    return frozenset(
        timer_key(step.due_at_ms, step_id, state.execution_id)
        for step_id, step in state.steps.items()
        if step.status is StepStatus.RUNNING and step.due_at_ms is not None
    )
