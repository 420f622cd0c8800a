"""What `start --wait` shows is what the coordinator accepted: a late report of a
superseded attempt does not overwrite the step's current attempt."""

from __future__ import annotations

from typing import Any

from stepstream.client.watch import ExecutionView
from stepstream.schemas.codec import DecodedEvent


def event(name: str, attempt: int, **fields: Any) -> DecodedEvent:
    record = {"step_id": "a", "attempt": attempt, "timestamp": 1, **fields}
    return DecodedEvent(name, record)


def report(name: str, attempt: int, **fields: Any) -> DecodedEvent:
    timings = {"started_at": 10 * attempt, "finished_at": 10 * attempt + 5}
    return event(name, attempt, worker=f"w{attempt}", **timings, **fields)


def test_a_late_report_of_an_earlier_attempt_is_not_shown() -> None:
    view = ExecutionView("x")
    view.apply(event("StepReady", 1))
    view.apply(event("StepReady", 2))  # attempt 1 timed out or failed; 2 is running
    view.apply(report("StepCompleted", 1, output_json="{}"))  # attempt 1's late report
    assert (view.steps["a"].status, view.steps["a"].attempt) == ("running", 2)
    view.apply(report("StepFailed", 2, error_message="boom"))
    assert (view.steps["a"].status, view.steps["a"].worker) == ("failed", "w2")


def test_a_report_is_shown_when_its_release_was_not_seen() -> None:
    view = ExecutionView("x")  # opened after the step was released
    view.apply(report("StepCompleted", 3, output_json="{}"))
    assert (view.steps["a"].status, view.steps["a"].attempt) == ("completed", 3)


def test_a_skipped_step_and_a_cancelled_execution_are_shown_with_their_reasons() -> None:
    view = ExecutionView("x")
    view.apply(DecodedEvent("StepSkipped", {"step_id": "a", "reason": "condition false: ..."}))
    assert (view.steps["a"].status, view.steps["a"].detail) == ("skipped", "condition false: ...")
    view.apply(DecodedEvent("WorkflowCancelled", {"reason": "duplicate request"}))
    assert (view.outcome, view.detail) == ("cancelled", "duplicate request")
