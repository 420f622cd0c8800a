"""Avro single-object encoding of stepstream events, with fastavro.

Wire format (Avro specification, "Single-object encoding"): the marker C3 01, the
8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's parsing canonical
form, then the Avro binary body. A reader finds the writer schema by fingerprint among
every schema it knows (current and `history/`), and resolves it to its current schema
of the same name, so producers and consumers can be upgraded one at a time.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

MARKER = b"\xc3\x01"
HEADER_SIZE = 10
SCHEMA_DIR = Path(__file__).resolve().parent
NAMESPACE = "io.stepstream.events"


class EventCodecError(ValueError):
    """Bytes that are not a stepstream event, or a record that cannot be one."""


class CorruptEvent(EventCodecError):
    """No single-object marker, or a body that does not decode with its schema."""


class UnknownSchema(EventCodecError):
    """The fingerprint names no schema this reader knows."""


class InvalidEvent(EventCodecError):
    """A record does not match the schema it is written with."""


_CRC64_EMPTY = 0xC15D213AA4D7A795
_CRC64_TABLE = []
for _byte in range(256):
    _fp = _byte
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_CRC64_EMPTY & -(_fp & 1))
    _CRC64_TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint the Avro specification calls CRC-64-AVRO."""
    fingerprint = _CRC64_EMPTY
    for byte in data:
        fingerprint = (fingerprint >> 8) ^ _CRC64_TABLE[(fingerprint ^ byte) & 0xFF]
    return fingerprint


@dataclass(frozen=True)
class KnownSchema:
    name: str  # short name, e.g. "StepCompleted"
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as on the wire
    # The same schema without logical types, which is what encodes and decodes: a
    # timestamp-millis is a long on the wire, and the engine works in integer
    # milliseconds, so the round trip through datetime (half of the decoding time)
    # bought nothing. The bytes are identical either way.
    wire: Any


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    record: dict[str, Any]


def without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(item) for item in schema]
    return schema


def load_schema(path: Path) -> KnownSchema:
    raw = json.loads(path.read_text())
    parsed = parse_schema(raw)
    canonical = to_parsing_canonical_form(parsed)
    fingerprint = crc64_avro(canonical.encode()).to_bytes(8, "little")
    wire = parse_schema(without_logical_types(raw))
    return KnownSchema(raw["name"], parsed, fingerprint, wire)


class EventCodec:
    """Encodes with the current schemas; decodes anything written with a known one."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.current = {s.name: s for s in map(load_schema, sorted(schema_dir.glob("*.avsc")))}
        history = [load_schema(p) for p in sorted((schema_dir / "history").glob("*.avsc"))]
        self.by_fingerprint = {s.fingerprint: s for s in [*history, *self.current.values()]}

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.current.get(name)
        if schema is None:
            raise UnknownSchema(f"no schema named {name!r}")
        buffer = io.BytesIO()
        buffer.write(MARKER + schema.fingerprint)
        try:
            schemaless_writer(buffer, schema.wire, record)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise InvalidEvent(f"{name}: {error}") from error
        return buffer.getvalue()

    def decode(self, data: bytes | None) -> DecodedEvent:
        if data is None or len(data) < HEADER_SIZE or data[:2] != MARKER:
            raise CorruptEvent("not an Avro single-object encoded event (no C3 01 marker)")
        writer = self.by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if writer is None:
            raise UnknownSchema(f"unknown schema fingerprint {data[2:HEADER_SIZE].hex()}")
        reader = self.current.get(writer.name, writer)
        # Resolution only when the writer used an older version (it is not free).
        resolve_to = None if reader is writer else reader.wire
        try:
            record = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), writer.wire, resolve_to)
        except Exception as error:
            raise CorruptEvent(f"{writer.name} body does not decode: {error!r}") from error
        if not isinstance(record, dict):
            raise CorruptEvent(f"{writer.name} body is not a record")
        return DecodedEvent(reader.name, record)


CODEC = EventCodec()
