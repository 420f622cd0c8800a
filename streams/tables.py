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
    correlations: TableT[bytes, Any]  # events from outside and the waits for them


# The changelogs of tables whose keys leave (retention's tombstones): compaction removes a
# deleted key only from rolled segments, and Kafka rolls a segment after 7 days or 1 GiB,
# so without these a changelog, and every takeover that reads it, would keep every key
# for a week. Tombstones themselves stay a day (`delete.retention.ms`): a worker whose
# local store is older than that is rebuilt from the changelog (streams.local_store).
COMPACTED_PROMPTLY = {
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
}


def declare_tables(app: faust.App, partitions: int) -> Tables:
    # Keys are the execution id's bytes, as on the topics (key_type=bytes selects the raw
    # codec for the store and the changelog alike). Checkpoints are JSON; the coordinator
    # encodes them itself (value_type=bytes) because faust would encode each value twice,
    # once for the store and once for the changelog.
    return Tables(
        executions=app.Table(
            "executions",
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs=COMPACTED_PROMPTLY,
        ),
        started=app.Table(
            "started", partitions=partitions, key_type=bytes, extra_topic_configs=COMPACTED_PROMPTLY
        ),
        rate_counts=app.Table("rate-counts", partitions=partitions, key_type=bytes),
        rate_stats=app.Table("rate-stats", partitions=partitions, key_type=bytes),
        rate_deferred=app.Table("rate-deferred", partitions=partitions, key_type=bytes),
        correlations=app.Table(
            "correlations",
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            extra_topic_configs=COMPACTED_PROMPTLY,
        ),
    )
