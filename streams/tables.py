"""The coordinator role's tables: changelog-backed, recovered by faust."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT


@dataclass(frozen=True)
class Tables:
    """The coordinator role's state, changelog-backed."""

    executions: TableT[bytes, Any]
    started: TableT[bytes, Any]
    rate_counts: TableT[bytes, Any]
    rate_stats: TableT[bytes, Any]
    rate_deferred: TableT[bytes, Any]


def declare_tables(app: faust.App, partitions: int) -> Tables:
    # Keys are the execution id's bytes, as on the topics (key_type=bytes selects the raw
    # codec for the store and the changelog alike). Checkpoints are JSON; the coordinator
    # encodes them itself (value_type=bytes) because faust would encode each value twice,
    # once for the store and once for the changelog.
    return Tables(
        executions=app.Table("executions", partitions=partitions, key_type=bytes, value_type=bytes),
        started=app.Table("started", partitions=partitions, key_type=bytes),
        rate_counts=app.Table("rate-counts", partitions=partitions, key_type=bytes),
        rate_stats=app.Table("rate-stats", partitions=partitions, key_type=bytes),
        rate_deferred=app.Table("rate-deferred", partitions=partitions, key_type=bytes),
    )
