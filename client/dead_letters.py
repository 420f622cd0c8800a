"""Operators' view of the dead-letter topic, and re-driving letters once the cause is fixed.

A dead letter keeps the original bytes, key, topic, partition and offset, and the reason.
Once the cause is fixed (a database constraint, a deployment that did not know a schema
yet), `redrive` publishes the original bytes again to their topic, under their key, so
every consumer of that topic sees the event again. Every consumer is idempotent, so the
ones that had processed it change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from stepstream.client.watch import reader, rewind
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames


@dataclass(frozen=True)
class Letter:
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes
    error: str
    execution_id: str | None


async def read_letters(
    settings: Settings, source_topic: str | None = None, execution_id: str | None = None
) -> list[Letter]:
    """The dead letters up to the topic's current end, oldest first in each partition,
    optionally only those from one topic or of one execution."""
    consumer = reader(settings)
    await consumer.start()
    try:
        topic = TopicNames.for_prefix(settings.topic_prefix).dead_letter
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        letters = []
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.offset >= ends[TopicPartition(topic, record.partition)]:
                        continue  # arrived after we started: the next reading shows it
                    try:
                        letters.append(letter_of(CODEC.decode(record.value or b"").record))
                    except EventCodecError:
                        continue  # not a DeadLetter: nothing to re-drive
        return [
            letter
            for letter in letters
            if source_topic in (None, letter.source_topic)
            and execution_id in (None, letter.execution_id)
        ]
    finally:
        await consumer.stop()


def letter_of(record: dict[str, Any]) -> Letter:
    return Letter(
        source_topic=record["source_topic"],
        partition=record["partition"],
        offset=record["offset"],
        key=record["key"],
        payload=record["payload"],
        error=record["error"],
        execution_id=record["execution_id"],
    )


async def redrive(settings: Settings, letters: list[Letter]) -> int:
    """Publish each letter's original bytes to its topic, under its key; returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for letter in letters:
            await producer.send(letter.source_topic, letter.payload, key=letter.key)
        await producer.flush()
        return len(letters)
    finally:
        await producer.stop()
