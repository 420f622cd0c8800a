"""The event-id recipe of the worker contract (README): the first 32 hex digits of the
SHA-256 of the parts joined with "/". A worker in another language computes it with its
standard library; the example external worker, which imports nothing of stepstream,
computes the same ids as the engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from stepstream.streams.events import event_id

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "external_worker.py"


def test_the_recipe_as_documented() -> None:
    # printf 'order-17/step-completed/charge/2' | sha256sum | cut -c1-32
    expected = "a980ee61d6d9b53d746b3643a7635980"
    assert event_id("order-17", "step-completed", "charge", 2) == expected


def test_the_example_worker_reports_under_the_ids_the_executor_would_use() -> None:
    spec = importlib.util.spec_from_file_location("external_worker", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    task = {"execution_id": "order-17", "step_id": "charge", "attempt": 2}
    assert example.report_id(task, "step-completed") == event_id(
        "order-17", "step-completed", "charge", 2
    )
