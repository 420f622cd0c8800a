"""Hot state holds work in flight: the keys that index it, and when a finished
execution's checkpoint leaves.

Beside its checkpoints, each partition of the executions table keeps two indexes, so
that nothing walks every checkpoint ever written:

* `#running/<execution id>`: one key per execution that has not ended. Recovery re-arms
  timers and rebuilds the watchdog's index from these keys alone.
* `#retire/<due ms, 13 digits>/<execution id>`: one key per ended execution, named by
  the time its checkpoint is due to leave (its end plus the retention). Keys sort by
  due time, so the sweep reads from the first key up to now, and no further.

Execution ids start with a letter or a digit, so no `#` key is ever an execution's.
Pure: no I/O.
"""

from __future__ import annotations

from enum import StrEnum

from stepstream.workflows.state import TERMINAL, ExecutionState

RUNNING_PREFIX = "#running/"
RETIRE_PREFIX = "#retire/"
DUE_DIGITS = 13  # milliseconds since the epoch, zero-padded: sorts as numbers do


def running_key(execution_id: str) -> str:
    return f"{RUNNING_PREFIX}{execution_id}"


def retire_key(due_ms: int, execution_id: str) -> str:
    return f"{RETIRE_PREFIX}{due_ms:0{DUE_DIGITS}d}/{execution_id}"


def retire_until(now_ms: int) -> str:
    """The first key past every retire key due at `now_ms`: a scan's end."""
    return f"{RETIRE_PREFIX}{now_ms + 1:0{DUE_DIGITS}d}/"


def split_retire_key(key: str) -> tuple[int, str] | None:
    """(due ms, execution id) of a retire key; None for any other key."""
    if not key.startswith(RETIRE_PREFIX):
        return None
    due, separator, execution_id = key[len(RETIRE_PREFIX) :].partition("/")
    if not separator or not due.isdigit() or not execution_id:
        return None
    return int(due), execution_id


def retire_due(state: ExecutionState, retention_ms: int) -> int | None:
    """When an ended execution's checkpoint is due to leave; None while it runs."""
    if state.status not in TERMINAL:
        return None
    return (state.finished_at_ms or 0) + retention_ms


class Retirement(StrEnum):
    DELETE = "delete"  # ended, and its retention is over: the checkpoint leaves
    KEEP = "keep"  # not due yet (re-opened, ended again later): only this index key goes
    REOPENED = "reopened"  # running again: only this index key goes
    GONE = "gone"  # no checkpoint: only this index key goes


def retirement(state: ExecutionState | None, now_ms: int, retention_ms: int) -> Retirement:
    """What a due retire key means for its execution's checkpoint now. A key left by an
    earlier end of a re-opened execution is dropped: its latest end wrote its own key."""
    if state is None:
        return Retirement.GONE
    due = retire_due(state, retention_ms)
    if due is None:
        return Retirement.REOPENED
    return Retirement.DELETE if due <= now_ms else Retirement.KEEP
