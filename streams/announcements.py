"""Workers announce the step types and task queues they serve, on the compacted topic
`<prefix>.workers` (schemas/WorkerAnnounced.avsc): one record per worker name, sent at
start and every `ANNOUNCE_INTERVAL_MS`, and a tombstone at a clean stop. A worker not
heard of for three intervals is gone (it died, or its host did). Readers take the topic
whole: it holds one record per worker that ever ran, and compaction keeps it so."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.events import now_ms
from stepstream.streams.kafka_access import KafkaAccess

ANNOUNCE_INTERVAL_MS = 10_000
MISSED_BEFORE_GONE = 3


@dataclass(frozen=True)
class Announcement:
    worker: str
    step_types: tuple[str, ...]
    queues: tuple[str, ...]
    builtin_executor: bool
    started_at_ms: int
    seen_at_ms: int
    interval_ms: int
    metrics_url: str | None = None

    def live(self, now: int) -> bool:
        return now - self.seen_at_ms <= MISSED_BEFORE_GONE * self.interval_ms

    def record(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "step_types": sorted(self.step_types),
            "queues": sorted(self.queues),
            "builtin_executor": self.builtin_executor,
            "started_at": self.started_at_ms,
            "timestamp": self.seen_at_ms,
            "interval_ms": self.interval_ms,
            "metrics_url": self.metrics_url,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Announcement:
        return cls(
            worker=record["worker"],
            step_types=tuple(record["step_types"]),
            queues=tuple(record["queues"]),
            builtin_executor=record["builtin_executor"],
            started_at_ms=record["started_at"],
            seen_at_ms=record["timestamp"],
            interval_ms=record["interval_ms"],
            metrics_url=record.get("metrics_url"),
        )


def encode(announcement: Announcement) -> bytes:
    return CODEC.encode("WorkerAnnounced", announcement.record())


async def read_announcements(kafka: KafkaAccess, topic: str) -> list[Announcement]:
    """Every worker's last announcement, by name (those that stopped cleanly left a
    tombstone and are not listed). A record that does not decode is skipped: a stranger's
    bytes on this topic must not hide the others."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # fetches the metadata
            return []  # no worker has run under this prefix yet
        partitions = [TopicPartition(topic, 0)]  # a catalog: one partition (streams.topics)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[bytes, bytes | None] = {}

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        async with asyncio.timeout(30):
            while await behind():
                batches = await consumer.getmany(timeout_ms=500)
                for message in (m for batch in batches.values() for m in batch):
                    if message.key is not None:
                        latest[message.key] = message.value
    finally:
        await consumer.stop()
    return sorted(_decoded(latest.values()), key=lambda a: a.worker)


def _decoded(values: Iterable[bytes | None]) -> Iterable[Announcement]:
    for value in values:
        if value is None:
            continue
        try:
            decoded = CODEC.decode(value)
        except EventCodecError:
            continue
        if decoded.name == "WorkerAnnounced":
            yield Announcement.from_record(decoded.record)


@dataclass(frozen=True)
class Served:
    """What the live workers serve, as `register` checks a definition against it."""

    step_types: frozenset[str]  # run by the built-in executors of live workers
    queue_types: dict[str, frozenset[str] | None]  # per queue; None: any type

    @classmethod
    def by(cls, announcements: Iterable[Announcement], now: int | None = None) -> Served:
        now = now_ms() if now is None else now
        live = [a for a in announcements if a.live(now)]
        builtin = frozenset(t for a in live if a.builtin_executor for t in a.step_types)
        queues: dict[str, frozenset[str] | None] = {}
        for announcement in live:
            for queue in announcement.queues:
                known = queues.get(queue, frozenset())
                if known is None or not announcement.step_types:
                    queues[queue] = None
                else:
                    queues[queue] = known | frozenset(announcement.step_types)
        return cls(builtin, queues)
