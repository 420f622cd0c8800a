"""The Avro codec: single-object framing, fingerprints, typed errors, schema evolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.schema import to_parsing_canonical_form

from stepstream.schemas.codec import (
    CODEC,
    SCHEMA_DIR,
    CorruptEvent,
    EventCodec,
    InvalidEvent,
    UnknownSchema,
)

EVENTS = [
    "WorkflowStartRequested",
    "WorkflowStarted",
    "WorkflowRejected",
    "StepReady",
    "StepCompleted",
    "StepFailed",
    "WorkflowCompleted",
    "WorkflowFailed",
    "DeadLetter",
    "ReplayRequested",
]
COMMON = [
    "event_id",
    "execution_id",
    "workflow_id",
    "workflow_version",
    "tenant_id",
    "user_id",
    "timestamp",
]

STEP_COMPLETED = {
    "event_id": "e1",
    "execution_id": "x1",
    "workflow_id": "w",
    "workflow_version": 2,
    "tenant_id": "t",
    "user_id": "u",
    "timestamp": 1_700_000_000_123,
    "step_id": "step-1",
    "step_type": "noop",
    "attempt": 1,
    "output_json": '{"ok": true}',
    "started_at": 1_700_000_000_000,
    "finished_at": 1_700_000_000_100,
    "worker": "w-1",
}


def test_every_event_has_a_documented_schema_with_the_common_fields() -> None:
    for name in EVENTS:
        raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
        assert raw["namespace"] == "io.stepstream.events" and raw["doc"]
        assert [f["name"] for f in raw["fields"][:7]] == COMMON, name
        assert all(field.get("doc") for field in raw["fields"]), name
        timestamp = raw["fields"][6]["type"]
        assert timestamp == {"type": "long", "logicalType": "timestamp-millis"}


def test_round_trip_is_single_object_encoded() -> None:
    data = CODEC.encode("StepCompleted", STEP_COMPLETED)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == CODEC.current["StepCompleted"].fingerprint
    decoded = CODEC.decode(data)
    assert decoded.name == "StepCompleted"
    assert decoded.record == STEP_COMPLETED  # timestamps come back as integer millis


def test_fingerprints_match_the_avro_reference_implementation() -> None:
    for name, schema in CODEC.current.items():
        canonical = to_parsing_canonical_form(schema.parsed)
        assert avro.schema.parse(canonical).fingerprint("CRC-64-AVRO") == schema.fingerprint, name


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3\x01\x00", b"\x00" * 20, None])
def test_bytes_without_the_marker_are_corrupt(data: bytes | None) -> None:
    with pytest.raises(CorruptEvent):
        CODEC.decode(data)


def test_an_unknown_fingerprint_is_its_own_error() -> None:
    with pytest.raises(UnknownSchema, match="fingerprint"):
        CODEC.decode(b"\xc3\x01" + b"\x01" * 8 + b"\x02")


def test_a_truncated_body_is_corrupt() -> None:
    data = CODEC.encode("StepCompleted", STEP_COMPLETED)
    with pytest.raises(CorruptEvent, match="StepCompleted"):
        CODEC.decode(data[:-12])


def test_a_record_that_does_not_fit_its_schema_is_invalid() -> None:
    with pytest.raises(InvalidEvent):
        CODEC.encode("StepCompleted", {**STEP_COMPLETED, "attempt": "first"})
    with pytest.raises(UnknownSchema):
        CODEC.encode("NoSuchEvent", {})


def compatibility(reader_path: Path, writer_path: Path) -> SchemaCompatibilityType:
    checker = ReaderWriterCompatibilityChecker()
    reader = avro.schema.parse(reader_path.read_text())
    writer = avro.schema.parse(writer_path.read_text())
    return checker.get_compatibility(reader, writer).compatibility


def test_every_schema_reads_every_committed_previous_version() -> None:
    history = sorted((SCHEMA_DIR / "history").glob("*.avsc"))
    assert {p.name.split(".")[0] for p in history} >= set(EVENTS)
    for old in history:
        current = SCHEMA_DIR / f"{old.name.split('.')[0]}.avsc"
        assert compatibility(current, old) is SchemaCompatibilityType.compatible, old.name


def test_the_compatibility_check_catches_a_breaking_change(tmp_path: Path) -> None:
    raw = json.loads((SCHEMA_DIR / "StepCompleted.avsc").read_text())
    raw["fields"].append({"name": "region", "type": "string"})  # no default: breaks old data
    broken = tmp_path / "StepCompleted.avsc"
    broken.write_text(json.dumps(raw))
    old = SCHEMA_DIR / "history" / "StepCompleted.v1.avsc"
    assert compatibility(broken, old) is SchemaCompatibilityType.incompatible


def test_a_reader_resolves_an_older_writer_schema_by_fingerprint(tmp_path: Path) -> None:
    # A newer reader adds a field with a default; events from the old writer still decode.
    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py"))
    newer = tmp_path / "schemas" / "StepCompleted.avsc"
    raw = json.loads(newer.read_text())
    raw["fields"].append({"name": "region", "type": "string", "default": "eu", "doc": "d"})
    newer.write_text(json.dumps(raw))
    old_bytes = CODEC.encode("StepCompleted", STEP_COMPLETED)
    decoded = EventCodec(tmp_path / "schemas").decode(old_bytes)
    assert decoded.record == {**STEP_COMPLETED, "region": "eu"}
