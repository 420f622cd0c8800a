"""The coordinator's decisions read back from a checkpoint: how a step's last attempt
ended, and why a report the reducer did not apply was ignored. Pure."""

from __future__ import annotations

from stepstream.workflows.messages import AttemptOutcome, EndAttempt, StepCompleted, StepFailed
from stepstream.workflows.state import TERMINAL, ExecutionState, StepState, StepStatus


def ended_attempt(state: ExecutionState, step_id: str, step: StepState) -> EndAttempt | None:
    """The decision on the step's last attempt that ended, read back from the checkpoint
    (which keeps that attempt's error, times and worker). Within one run, the attempt
    before a running one failed: it is the one that ended."""
    if step.status is StepStatus.COMPLETED:
        return EndAttempt(
            step_id,
            step.attempt,
            AttemptOutcome.COMPLETED,
            output=step.output,
            started_at_ms=step.started_at_ms,
            finished_at_ms=step.finished_at_ms,
            worker=step.worker,
            released_at_ms=step.ready_at_ms,
        )
    # A running step's release time is its current attempt's, not the ended one's.
    released = step.ready_at_ms
    if step.status in (StepStatus.FAILED, StepStatus.RETRYING) and step.attempt > step.base:
        attempt, will_retry = step.attempt, step.status is StepStatus.RETRYING
    elif step.status is StepStatus.RUNNING and step.attempt - 1 > step.base:
        attempt, will_retry, released = step.attempt - 1, True, None
    else:
        return None
    return EndAttempt(
        step_id,
        attempt,
        AttemptOutcome.TIMED_OUT if step.timed_out else AttemptOutcome.FAILED,
        error=step.error,
        will_retry=will_retry,
        started_at_ms=step.started_at_ms,
        finished_at_ms=step.finished_at_ms,
        worker=step.worker,
        released_at_ms=released,
    )


def ignored_report(state: ExecutionState, report: StepCompleted | StepFailed) -> EndAttempt | None:
    """Why a report the reducer did not apply was ignored; None for a copy of the report
    that ended its attempt (the same report delivered twice is applied once, silently)."""
    step = state.steps.get(report.step_id)
    kind = "completed" if isinstance(report, StepCompleted) else "failed"
    if step is None:
        reason = f"no step {report.step_id!r} in {state.definition.id} v{state.definition.version}"
    else:
        ended = ended_attempt(state, report.step_id, step)
        if ended is not None and ended.attempt == report.attempt:
            if ended.outcome == kind:
                return None  # a duplicate
            reason = f"attempt {report.attempt} already ended ({ended.outcome.replace('_', ' ')})"
        elif state.status in TERMINAL:
            reason = f"the execution has ended ({state.status})"
        elif step.attempt != report.attempt:
            reason = f"not the current attempt (current {step.attempt})"
        else:
            reason = f"the step is {step.status}, not running"
    return EndAttempt(
        report.step_id,
        report.attempt,
        AttemptOutcome.IGNORED,
        error=reason,
        started_at_ms=report.started_at_ms,
        finished_at_ms=report.at_ms if isinstance(report, StepCompleted) else None,
        worker=report.worker,
        report=kind,
    )
