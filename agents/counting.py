"""What the coordinator counts for Prometheus (infra.metrics): each report it applies,
each command a transition gives (not those announced again on a redelivery, which
would count twice)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stepstream.infra.metrics import METRICS
from stepstream.workflows import (
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ExecutionState,
    FailWorkflow,
    ScheduleRetry,
    SkipStep,
)
from stepstream.workflows.state import ran_in_parallel

SECOND_MS = 1000.0


def count_report(name: str, record: dict[str, Any], before: ExecutionState) -> None:
    """A StepCompleted or StepFailed the coordinator applied: its outcome, how long the
    attempt ran, and how long it waited between its release and its start."""
    outcome = "completed" if name == "StepCompleted" else "failed"
    METRICS.steps.labels(outcome).inc()
    started, finished = record["started_at"], record["finished_at"]
    METRICS.step_duration.labels(outcome).observe(max(0, finished - started) / SECOND_MS)
    released = before.steps[record["step_id"]].ready_at_ms
    if released is not None:
        METRICS.scheduling_delay.observe(max(0, started - released) / SECOND_MS)


def count_commands(commands: Iterable[Command], after: ExecutionState) -> None:
    for command in commands:
        match command:
            case ScheduleRetry():
                METRICS.retries.inc()
            case SkipStep():
                METRICS.steps.labels("skipped").inc()
            case CompleteWorkflow() | FailWorkflow() | CancelWorkflow():
                outcome = {
                    CompleteWorkflow: "completed",
                    FailWorkflow: "failed",
                    CancelWorkflow: "cancelled",
                }[type(command)]
                METRICS.executions.labels(outcome).inc()
                if ran_in_parallel(after):
                    METRICS.parallel_executions.inc()
