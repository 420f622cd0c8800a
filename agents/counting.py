"""What the coordinator counts for Prometheus (infra.metrics): each attempt it decides,
each command a transition gives (not those announced again on a redelivery, which
would count twice)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stepstream.infra.metrics import METRICS
from stepstream.workflows import (
    AttemptOutcome,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    EndAttempt,
    ExecutionState,
    FailWorkflow,
    OpenTask,
    ScheduleRetry,
    SkipStep,
)
from stepstream.workflows.human_tasks import ANSWER_REPORT, HUMAN_WORKER_PREFIX
from stepstream.workflows.state import ran_in_parallel

log = logging.getLogger("stepstream.agents.coordinator")  # where operators look for it
SECOND_MS = 1000.0


def count_attempt(end: EndAttempt, before: ExecutionState) -> None:
    """An attempt the coordinator decided on: its outcome, how long it ran by its
    worker's report, and how long it waited between its release and its start; a
    warning when it timed out (no report came, so no other line says so)."""
    METRICS.steps.labels(str(end.outcome)).inc()
    if end.report == ANSWER_REPORT:
        METRICS.human_tasks.labels("refused").inc()
    elif end.outcome is AttemptOutcome.COMPLETED and (end.worker or "").startswith(
        HUMAN_WORKER_PREFIX
    ):
        METRICS.human_tasks.labels("answered").inc()
    if end.outcome is AttemptOutcome.TIMED_OUT:
        execution_id = before.execution_id
        log.warning(
            "%s/%s attempt %d timed out (%s); %s",
            *(execution_id, end.step_id, end.attempt, end.error),
            "a retry follows" if end.will_retry else "the step failed",
            extra={"execution_id": execution_id, "step_id": end.step_id},
        )
    if end.outcome is AttemptOutcome.COMPLETED and before.definition.has_waits:
        step = before.definition.step_by_id.get(end.step_id)  # None for fan-out instances
        if step is not None and step.wait is not None:  # a timer fired: how late
            late = end.output["fired_at_ms"] - end.output["due_at_ms"]
            METRICS.timer_lateness.observe(max(0, late) / SECOND_MS)
            return
    started, finished = end.started_at_ms, end.finished_at_ms
    if end.outcome is AttemptOutcome.IGNORED or started is None or finished is None:
        return  # an ignored report is no attempt's run; a timeout has no report
    METRICS.step_duration.labels(str(end.outcome)).observe(max(0, finished - started) / SECOND_MS)
    released = before.steps[end.step_id].ready_at_ms
    if released is not None:
        METRICS.scheduling_delay.observe(max(0, started - released) / SECOND_MS)


def count_commands(
    commands: Iterable[Command], before: ExecutionState, after: ExecutionState
) -> None:
    for command in commands:
        match command:
            case EndAttempt():
                count_attempt(command, before)
            case ScheduleRetry():
                METRICS.retries.inc()
            case OpenTask():
                METRICS.human_tasks.labels("opened").inc()
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
