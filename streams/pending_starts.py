"""Start requests past the engine group's committed offset: what the intake has not
finished with. A start that stays there past a bound with no outcome was skipped (an
event dropped in the drain path) or waits behind a stalled partition: the start
watchdog announces it again once the commit has stood still for the bound too
(`streams.progress`), and `stepstream stalled` lists it. Only the records past the commit
are read, so the cost follows what is pending, not the topic's history."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stepstream.schemas.codec import CODEC, EventCodecError

# The most records read past one partition's commit per look: a bound on one look's
# cost however far a stalled partition fell behind (the oldest are the ones that count).
MOST_PER_PARTITION = 2_000


@dataclass(frozen=True)
class PendingStart:
    partition: int
    offset: int
    requested_at_ms: int  # the record's timestamp
    execution_id: str
    key: bytes | None
    value: bytes


async def pending_starts(
    admin: AIOKafkaAdminClient,
    reader: AIOKafkaConsumer,
    group: str,
    partitions: Iterable[TopicPartition],
) -> list[PendingStart]:
    """The start requests of `partitions` at or past `group`'s committed offset, oldest
    first per partition (at most MOST_PER_PARTITION each)."""
    return await starts_past(reader, await committed_offsets(admin, reader, group, partitions))


async def committed_offsets(
    admin: AIOKafkaAdminClient,
    reader: AIOKafkaConsumer,
    group: str,
    partitions: Iterable[TopicPartition],
) -> dict[TopicPartition, int]:
    """`group`'s committed offset of each partition; its log's beginning where it has none."""
    tps = sorted(partitions)
    if not tps:
        return {}
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    starts = await reader.beginning_offsets(tps)
    offsets: dict[TopicPartition, int] = {}
    for tp in tps:
        meta = committed.get(tp)
        offsets[tp] = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
    return offsets


async def starts_past(
    reader: AIOKafkaConsumer, committed: dict[TopicPartition, int]
) -> list[PendingStart]:
    """The start requests at or past each partition's offset in `committed`."""
    if not committed:
        return []
    ends = await reader.end_offsets(list(committed))
    behind = {
        tp: (first, min(ends[tp], first + MOST_PER_PARTITION))
        for tp, first in committed.items()
        if first < ends[tp]
    }
    if not behind:
        return []
    reader.assign(list(behind))
    for tp, (first, _) in behind.items():
        reader.seek(tp, first)
    found: list[PendingStart] = []
    remaining = dict(behind)
    while remaining:
        batches = await reader.getmany(*remaining, timeout_ms=1_000)
        if not batches:
            break  # nothing more came within a second: what was read is the answer
        for tp, records in batches.items():
            stop = remaining.get(tp, (0, 0))[1]
            for record in records:
                pending = _pending(tp, record) if record.offset < stop else None
                if pending is not None:
                    found.append(pending)
            if records and records[-1].offset + 1 >= stop:
                remaining.pop(tp, None)
    return found


def _pending(tp: TopicPartition, record: Any) -> PendingStart | None:
    try:
        decoded = CODEC.decode(record.value)
    except EventCodecError:
        return None  # the intake dead-letters it; not a start
    if decoded.name != "WorkflowStartRequested":
        return None
    return PendingStart(
        tp.partition,
        record.offset,
        record.timestamp,
        decoded.record["execution_id"],
        record.key,
        record.value,
    )
