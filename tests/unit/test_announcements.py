"""What `register` learns from the workers' announcements: which step types the live
workers run, and which types each task queue's workers run (None: any)."""

from __future__ import annotations

from stepstream.streams.announcements import Announcement, Served
from stepstream.workflows import StepDefinition, WorkflowDefinition
from stepstream.workflows.validation import check_queue_steps


def announced(
    worker: str, types: tuple[str, ...], queues: tuple[str, ...], seen: int
) -> Announcement:
    return Announcement(worker, types, queues, not queues, 0, seen, 10_000)


def test_only_live_workers_count_and_a_queue_worker_without_types_takes_any() -> None:
    served = Served.by(
        [
            announced("engine-1", ("noop", "GREET"), (), seen=95_000),
            announced("dead", ("OLD",), (), seen=10_000),  # not heard of for 3 intervals
            announced("pdf-1", ("RENDER_PDF",), ("reports",), seen=99_000),
            announced("pdf-2", ("RENDER_CSV",), ("reports",), seen=99_000),
            announced("any-1", (), ("billing",), seen=99_000),
            announced("typed-billing", ("CHARGE",), ("billing",), seen=99_000),
        ],
        now=100_000,
    )
    assert served.step_types == {"noop", "GREET"}
    assert served.queue_types == {"reports": {"RENDER_PDF", "RENDER_CSV"}, "billing": None}


def test_queue_steps_are_checked_against_their_queues_workers() -> None:
    steps = (
        StepDefinition("a", "RENDER_PDF", queue="reports"),
        StepDefinition("b", "SEND_FAX", queue="reports"),
        StepDefinition("c", "ANYTHING", queue="billing"),
        StepDefinition("d", "LATER", queue="nobody"),
        StepDefinition("e", "noop"),
    )
    definition = WorkflowDefinition("w", 1, "w", steps)
    problems, warnings = check_queue_steps(
        definition, {"reports": frozenset({"RENDER_PDF"}), "billing": None}
    )
    assert [str(p) for p in problems] == [
        "steps[1] (b).type: no live worker on queue 'reports' runs 'SEND_FAX' (RENDER_PDF)"
    ]
    assert warnings == ["no live worker serves queue 'nobody' yet"]
