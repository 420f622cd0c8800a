"""The example external worker follows the contract's answers on schema versions: a
task written with an earlier version (schemas/history/) is read into the current one, a
fingerprint of no known version stops the worker (a newer engine), and bytes that are
not single-object encoding are not a task. Pure code: the example's own Schema class."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "external_worker", ROOT / "examples" / "external_worker.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def task() -> dict[str, Any]:
    return {
        "event_id": "e",
        "execution_id": "order-17",
        "workflow_id": "w",
        "workflow_version": 1,
        "tenant_id": "t",
        "user_id": "u",
        "timestamp": 1_767_225_600_000,
        "step_id": "charge",
        "step_type": "CHARGE_CARD",
        "attempt": 2,
        "idempotency_key": "order-17/charge/2",
        "inputs_json": "{}",
        "config_json": "{}",
        "timeout_ms": 30_000,
    }


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """A release whose StepReady gained a field (with a default) after version 1."""
    (tmp_path / "history").mkdir()
    shutil.copy(ROOT / "schemas" / "StepReady.avsc", tmp_path / "history" / "StepReady.v1.avsc")
    newer = json.loads((ROOT / "schemas" / "StepReady.avsc").read_text())
    newer["fields"].append({"name": "priority", "type": "int", "default": 0})
    (tmp_path / "StepReady.avsc").write_text(json.dumps(newer))
    return tmp_path


def test_a_task_of_an_earlier_version_is_read_into_the_current_one(schemas: Path) -> None:
    worker = example()
    older = worker.Schema(schemas / "history" / "StepReady.v1.avsc")
    decoded = worker.Schema(schemas / "StepReady.avsc").decode(older.encode(task()))
    assert decoded["attempt"] == 2 and decoded["priority"] == 0


def test_a_fingerprint_of_no_known_version_is_a_newer_engine(schemas: Path) -> None:
    worker = example()
    newest = worker.Schema(schemas / "StepReady.avsc")
    current = worker.Schema(ROOT / "schemas" / "StepReady.avsc")  # knows no "priority"
    with pytest.raises(worker.UnknownWriter, match="is of no known version"):
        current.decode(newest.encode({**task(), "priority": 3}))


def test_bytes_that_are_not_single_object_encoding_are_not_a_task() -> None:
    worker = example()
    with pytest.raises(ValueError, match="not Avro single-object encoding"):
        worker.Schema(ROOT / "schemas" / "StepReady.avsc").decode(b"{oops")
