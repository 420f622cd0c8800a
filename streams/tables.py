"""The coordinator role's tables: changelog-backed, recovered by faust."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TableT, TopicT

from stepstream.streams.topic_plan import COMPACTED_PROMPTLY


@dataclass(frozen=True)
class Tables:
    """The coordinator role's state, changelog-backed."""

    executions: TableT[bytes, Any]
    started: TableT[bytes, Any]
    rate_counts: TableT[bytes, Any]
    rate_stats: TableT[bytes, Any]
    rate_deferred: TableT[bytes, Any]
    correlations: TableT[bytes, Any]  # events from outside and the waits for them


class DurableApp(faust.App):
    """faust's app, whose every topic (its changelogs and its leader topic too) is declared
    with the engine's durability settings (streams.topic_plan.durable_configs)."""

    durable_configs: Mapping[str, str] = {}

    def topic(self, *topics: str, config: Mapping[str, Any] | None = None, **kw: Any) -> TopicT:
        return super().topic(*topics, config={**self.durable_configs, **(config or {})}, **kw)


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
