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

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition

from stepstream.client.watch import reader, rewind
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, require_topics


@dataclass(frozen=True)
class Letter:
    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes
    error: str
    execution_id: str | None
    payload_size: int | None = None  # of the original, when the letter holds a cut copy

    @property
    def letter_id(self) -> str:
        return f"{self.source_topic}/{self.partition}/{self.offset}"

    @property
    def truncated(self) -> bool:
        return self.payload_size is not None and self.payload_size > len(self.payload)


async def read_letters(
    settings: Settings, source_topic: str | None = None, execution_id: str | None = None
) -> list[Letter]:
    """The dead letters up to the topic's current end, oldest first in each partition,
    optionally only those from one topic or of one execution."""
    topic = TopicNames.for_prefix(settings.topic_prefix).dead_letter
    await require_topics(kafka_access(settings), [topic])
    consumer = reader(settings)
    await consumer.start()
    try:
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
        payload_size=record.get("payload_size"),
    )


@dataclass(frozen=True)
class Redrive:
    sent: list[Letter]
    skipped: list[Letter]  # re-driven before


async def redrive(settings: Settings, letters: list[Letter], again: bool = False) -> Redrive:
    """Publish each letter's original bytes to its topic, under its key, once: letters
    re-driven before (recorded in PostgreSQL) are skipped unless `again`. A letter that
    holds a cut copy of a large record is re-driven from the original on its topic."""
    connection = await asyncpg.connect(settings.database_url)
    producer = AIOKafkaProducer(**kafka_access(settings).client_options(), acks="all")
    try:
        done = {
            row["letter_id"]
            for row in await connection.fetch(
                "SELECT letter_id FROM dead_letter_redrives WHERE letter_id = ANY($1)",
                [letter.letter_id for letter in letters],
            )
        }
        skipped = [letter for letter in letters if letter.letter_id in done and not again]
        todo = [letter for letter in letters if letter not in skipped]
        await producer.start()
        for letter in todo:
            payload = await original(settings, letter) if letter.truncated else letter.payload
            await producer.send(letter.source_topic, payload, key=letter.key)
        await producer.flush()
        await connection.executemany(
            "INSERT INTO dead_letter_redrives (letter_id) VALUES ($1)"
            " ON CONFLICT (letter_id) DO UPDATE SET redriven_at = now()",
            [(letter.letter_id,) for letter in todo],
        )
        return Redrive(todo, skipped)
    finally:
        await producer.stop()
        await connection.close()


async def original(settings: Settings, letter: Letter) -> bytes:
    """The whole record a letter points at (LookupError if the topic no longer has it)."""
    consumer = reader(settings)
    await consumer.start()
    try:
        partition = TopicPartition(letter.source_topic, letter.partition)
        consumer.assign([partition])
        consumer.seek(partition, letter.offset)
        batch = await consumer.getmany(partition, timeout_ms=5000, max_records=1)
        records = batch.get(partition, [])
        if not records or records[0].offset != letter.offset or records[0].value is None:
            raise LookupError(f"{letter.letter_id} is no longer on its topic")
        return bytes(records[0].value)
    finally:
        await consumer.stop()
