"""Every topic a stepstream deployment uses, with its partitions, replicas and settings,
and a check of the cluster against it.

Teams that create topics through their own tooling read the plan (`stepstream topics plan
-o json`); `stepstream topics check` says which topic differs and how to fix it. The
plan includes faust's changelogs and its leader topic, which faust creates on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames

# The coordinator role's faust tables (streams.tables); faust names their changelogs
# `<app id>-<table>-changelog`, the app id being `<prefix>-engine`.
TABLES = ("executions", "started", "rate-counts", "rate-stats", "rate-deferred", "correlations")
COMPACTED_PROMPTLY_TABLES = ("executions", "started", "correlations")

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


def min_insync_replicas(settings: Settings) -> int | None:
    """The `min.insync.replicas` the engine sets on its topics; None leaves the cluster's.

    With acks=all a write is acknowledged once this many replicas hold it. Left at the
    cluster's default (1 unless changed, and Kafka 4.1 clusters with eligible leader
    replicas ignore a broker's own setting), an event can be acknowledged by one replica
    while the others are down: losing that disk loses it."""
    if settings.min_insync_replicas:
        return settings.min_insync_replicas
    if settings.replication_factor >= 3:
        return settings.replication_factor - 1
    return None


def durable_configs(settings: Settings) -> dict[str, str]:
    """The topic settings every topic the engine or faust declares gets."""
    wanted = min_insync_replicas(settings)
    return {} if wanted is None else {"min.insync.replicas": str(wanted)}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    created_by: str = "engine"  # or "faust", on the coordinator's first start
    purpose: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": self.configs,
            "created_by": self.created_by,
            "purpose": self.purpose,
        }


PURPOSES = {
    "workflow_start": "start requests from producers",
    "executions": "the coordinator's input: starts and timers",
    "step_ready": "steps to run, for the executors",
    "step_completed": "workers' reports; a public feed",
    "step_outcomes": "the coordinator's decisions on steps",
    "workflow_completed": "ended executions; a public feed",
    "workflow_rejected": "refused starts",
    "dead_letter": "events that could not be decoded or validated",
    "definitions": "registered definitions (compacted catalog)",
    "notifications": "the reference domain's notifications",
    "replay": "operator requests",
    "workers": "worker announcements (compacted catalog)",
    "events": "events from outside, keyed by correlation key",
    "events_unmatched": "events no wait took",
}


def plan_topics(settings: Settings, queues: tuple[str, ...] = ()) -> list[TopicSpec]:
    names = TopicNames.for_prefix(settings.topic_prefix)
    durable = durable_configs(settings)
    rf, partitions = settings.replication_factor, settings.topic_partitions
    compacted = {**durable, "cleanup.policy": "compact"}
    specs = []
    for key, purpose in PURPOSES.items():
        name = getattr(names, key)
        if name in names.catalogs():  # small, totally ordered, read whole
            specs.append(TopicSpec(name, 1, rf, compacted, purpose=purpose))
        else:
            specs.append(TopicSpec(name, partitions, rf, durable, purpose=purpose))
    specs += [
        TopicSpec(names.task_queue(queue), partitions, rf, durable, purpose=f"queue {queue}")
        for queue in queues
    ]
    app = f"{settings.topic_prefix}-engine"
    for table in TABLES:
        configs = compacted
        if table in COMPACTED_PROMPTLY_TABLES:
            configs = {**compacted, **COMPACTED_PROMPTLY}
        specs.append(
            TopicSpec(
                f"{app}-{table}-changelog",
                partitions,
                rf,
                configs,
                "faust",
                f"changelog of the {table} table",
            )
        )
    specs.append(
        TopicSpec(f"{app}-__assignor-__leader", 1, rf, durable, "faust", "faust's leader election")
    )
    return specs
