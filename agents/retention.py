"""Retention: an ended execution's checkpoint leaves hot state WORKFLOW_RETENTION_SECONDS
after its end; PostgreSQL keeps the history.

A sweep every few seconds reads, in each partition this worker owns, the retire index
from its first key up to now (`stepstream.workflows.retention`), and publishes one
RetentionDue event per partition listing what is due. The event brings the sweep into
the partition's context, as StepRetryDue does for timers: the coordinator applies it in
its batch, deleting each checkpoint whose retention is over (tombstones in the
changelog, which compaction then removes) and its index key, and tells the intake, with
a RetentionDue of its own on the tenant's partition, to forget the start id. A start id
is therefore deduplicated for exactly as long as its checkpoint stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from stepstream.agents.checkpoints import Checkpoints
from stepstream.infra.metrics import METRICS
from stepstream.streams.engine import Engine
from stepstream.streams.events import now_ms
from stepstream.streams.partitioner import partition_index
from stepstream.streams.store_scan import keys_in_range
from stepstream.workflows.retention import (
    RETIRE_PREFIX,
    Retirement,
    retire_key,
    retire_until,
    retirement,
    split_retire_key,
)

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0
MOST_PER_SWEEP = 1_000  # per partition: a bound on one sweep's event, however much is due
RESEND_AFTER_SECONDS = 60.0  # a RetentionDue not applied by then is published again


class Retention:
    def __init__(self, engine: Engine, checkpoints: Checkpoints) -> None:
        self.engine = engine
        self.checkpoints = checkpoints
        self.retention_ms = engine.settings.retention_seconds * 1000
        self.sent: dict[str, float] = {}  # execution id -> when a RetentionDue listed it
        self.retired = 0

    def due(self, partition: int, now: int) -> list[dict[str, Any]]:
        """The partition's executions whose retire key is due, not listed lately."""
        table = self.checkpoints.table
        start, stop = RETIRE_PREFIX.encode(), retire_until(now).encode()
        clock = time.monotonic()
        entries = []
        for key, tenant in keys_in_range(
            table, partition, start, stop, MOST_PER_SWEEP, self.checkpoints.partition_of
        ):
            parsed = split_retire_key(key.decode(errors="surrogateescape"))
            if parsed is None:
                continue
            due_ms, execution_id = parsed
            if clock - self.sent.get(execution_id, -RESEND_AFTER_SECONDS) < RESEND_AFTER_SECONDS:
                continue
            entries.append(
                {"execution_id": execution_id, "tenant_id": tenant.decode(), "due_ms": due_ms}
            )
        return entries

    async def sweep(self) -> None:
        engine = self.engine
        if not engine.ready:
            return
        now = now_ms()
        clock = time.monotonic()
        self.sent = {k: t for k, t in self.sent.items() if clock - t < RESEND_AFTER_SECONDS}
        topic = engine.names.executions
        for partition in sorted(tp.partition for tp in engine.assigned if tp.topic == topic):
            entries = self.due(partition, now)
            if not entries:
                continue
            first = entries[0]["execution_id"]
            record = {"event_id": f"retention/{first}/{now}", "timestamp": now, "retired": entries}
            await engine.send(topic, first, "RetentionDue", record)
            self.sent.update((entry["execution_id"], clock) for entry in entries)

    def apply(self, record: dict[str, Any], partition: int) -> list[tuple[str, dict[str, Any]]]:
        """In the coordinator's batch, in the partition's context: delete what is due and
        its index keys. Returns the intake's RetentionDue events (key, record), one per
        workflow-start partition, for the executions gone (deleted now, or before: a
        redelivery announces them again)."""
        now = now_ms()
        forgotten: dict[int, list[dict[str, Any]]] = {}
        for entry in record["retired"]:
            execution_id = entry["execution_id"]
            key = execution_id.encode(errors="surrogateescape")
            loaded = self.checkpoints.of(key)
            decision = retirement(None if loaded is None else loaded[0], now, self.retention_ms)
            if decision is Retirement.DELETE:
                self.checkpoints.delete(key, partition)
                self.retired += 1
                METRICS.checkpoints_retired.inc()
            index = retire_key(entry["due_ms"], execution_id).encode(errors="surrogateescape")
            self.checkpoints.changelog.delete(index, partition)
            self.sent.pop(execution_id, None)
            if decision in (Retirement.DELETE, Retirement.GONE):
                tenant = entry["tenant_id"].encode()
                at = partition_index(tenant, self.engine.settings.topic_partitions)
                forgotten.setdefault(at, []).append(entry)
        return [
            (
                entries[0]["tenant_id"],
                {**record, "event_id": f"{record['event_id']}/{at}", "retired": entries},
            )
            for at, entries in sorted(forgotten.items())
        ]

    async def tell_intake(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for tenant, record in events:
            await self.engine.send(self.engine.names.workflow_start, tenant, "RetentionDue", record)
