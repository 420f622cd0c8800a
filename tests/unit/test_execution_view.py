"""What `start --wait` and the console show is what the coordinator decided: a worker's
report never changes a step, a decision on an older attempt never overwrites the current
one, and a report the coordinator ignored is not shown as an outcome."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from stepstream.client.progress import step_table
from stepstream.client.watch import ExecutionView
from stepstream.schemas.codec import DecodedEvent


def event(name: str, attempt: int, **fields: Any) -> DecodedEvent:
    record = {"step_id": "a", "attempt": attempt, "timestamp": 1, **fields}
    return DecodedEvent(name, record)


def decision(attempt: int, outcome: str, will_retry: bool = False, **fields: Any) -> DecodedEvent:
    timings = {"started_at": 10 * attempt, "finished_at": 10 * attempt + 5}
    values = {"worker": f"w{attempt}", "error": None, **timings, **fields}
    return event("StepAttemptEnded", attempt, outcome=outcome, will_retry=will_retry, **values)


def report(name: str, attempt: int) -> DecodedEvent:
    return event(name, attempt, worker="w", started_at=1, finished_at=2, output_json="{}")


def test_reports_are_not_shown_decisions_are() -> None:
    view = ExecutionView("x")
    view.apply(event("StepReady", 1))
    view.apply(report("StepCompleted", 1))  # a report: what the coordinator made of it?
    assert (view.steps["a"].status, view.steps["a"].attempt) == ("running", 1)
    view.apply(decision(1, "failed", error="InvalidOutput: output_json is not JSON"))
    assert view.steps["a"].status == "failed"
    assert view.steps["a"].detail.startswith("InvalidOutput")


def test_a_retried_attempt_shows_retrying_then_the_next_attempt() -> None:
    view = ExecutionView("x")
    view.apply(event("StepReady", 1))
    view.apply(decision(1, "timed_out", will_retry=True, worker=None, started_at=None))
    assert view.steps["a"].status == "retrying"
    view.apply(event("StepReady", 2))
    view.apply(decision(1, "timed_out", will_retry=True))  # announced again: older attempt
    view.apply(decision(2, "completed"))
    assert (view.steps["a"].status, view.steps["a"].attempt, view.steps["a"].worker) == (
        "completed",
        2,
        "w2",
    )


def test_an_ignored_report_is_not_an_outcome() -> None:
    view = ExecutionView("x")
    view.apply(decision(3, "completed"))  # opened after the step was released
    view.apply(decision(2, "ignored", report="completed", error="not the current attempt"))
    view.apply(decision(4, "ignored", report="failed", error="attempt 4 was never released"))
    assert (view.steps["a"].status, view.steps["a"].attempt) == ("completed", 3)


def test_a_queue_only_workflow_shows_times_from_its_first_start_not_the_epoch() -> None:
    view = ExecutionView("x")  # queue steps' releases go to their queues: none seen
    view.apply(
        decision(1, "completed", started_at=1_700_000_000_000, finished_at=1_700_000_000_250)
    )
    console = Console(record=True, width=120)
    console.print(step_table(view, ["a"]))
    rendered = console.export_text()
    assert "+0 ms" in rendered and "+250 ms" in rendered and "1700000000" not in rendered


def test_a_skipped_step_and_a_cancelled_execution_are_shown_with_their_reasons() -> None:
    view = ExecutionView("x")
    view.apply(DecodedEvent("StepSkipped", {"step_id": "a", "reason": "condition false: ..."}))
    assert (view.steps["a"].status, view.steps["a"].detail) == ("skipped", "condition false: ...")
    view.apply(DecodedEvent("WorkflowCancelled", {"reason": "duplicate request"}))
    assert (view.outcome, view.detail) == ("cancelled", "duplicate request")
