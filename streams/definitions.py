"""The definition catalog: every worker reads the whole compacted definitions topic.

A plain aiokafka consumer (no group) rather than a Faust GlobalTable: the catalog is
small, and reading it ourselves lets a lookup that misses first catch up with the
topic's end, so a start right after `stepstream register` is never rejected as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stepstream.infra.metrics import METRICS
from stepstream.schemas.codec import CODEC, EventCodecError
from stepstream.streams.events import now_ms
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.workflows import (
    InvalidDefinition,
    WorkflowDefinition,
    build_definition,
    definition_to_dict,
)

log = logging.getLogger(__name__)


class DefinitionConflict(ValueError):
    """A version is immutable: the same id and version with another body is refused."""


class DefinitionCatalog:
    """Every valid definition on the topic. With `step_types`, a definition naming another
    type is invalid, as `register` would say; the invalid are skipped here (the
    persister dead-letters each one once, with its problems)."""

    def __init__(
        self, kafka: KafkaAccess, topic: str, step_types: Collection[str] | None = None
    ) -> None:
        self._kafka = kafka
        self._step_types = step_types
        self.skipped = 0
        self._topic = TopicPartition(topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._versions: dict[tuple[str, int], WorkflowDefinition] = {}
        self._latest: dict[str, int] = {}
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(**self._kafka.client_options(), enable_auto_commit=False)
        await self._consumer.start()
        self._consumer.assign([self._topic])
        await self._consumer.seek_to_beginning(self._topic)
        self._task = asyncio.create_task(self._follow(), name="definition-catalog")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._apply(record.value)
            self._changed.set()
            self._changed.clear()

    def _apply(self, value: bytes | None) -> None:
        try:
            record = CODEC.decode(value).record
            definition = build_definition(json.loads(record["definition_json"]), self._step_types)
        except (EventCodecError, InvalidDefinition, ValueError, KeyError) as error:
            self.skipped += 1
            log.debug("skipping an invalid definition record: %s", error)
            return
        key = (definition.id, definition.version)
        self._versions[key] = definition
        if definition.version > self._latest.get(definition.id, 0):
            self._latest[definition.id] = definition.version

    def get(self, workflow_id: str, version: int = 0) -> WorkflowDefinition | None:
        """Version 0 means the latest registered version."""
        version = version or self._latest.get(workflow_id, 0)
        return self._versions.get((workflow_id, version))

    async def lookup(
        self, workflow_id: str, version: int = 0, timeout: float = 10.0
    ) -> WorkflowDefinition | None:
        """Like `get`, but on a miss first read up to the topic's current end. Counted
        as the definitions cache (`stepstream_cache_requests_total{cache="definitions"}`):
        the catalog is the in-process copy of the definitions topic."""
        found = self.get(workflow_id, version)
        if found is not None or self._consumer is None:
            METRICS.cache_requests.labels("definitions", "hit" if found else "miss").inc()
            return found
        METRICS.cache_requests.labels("definitions", "miss").inc()
        await self.caught_up(timeout)
        return self.get(workflow_id, version)

    async def caught_up(self, timeout: float = 10.0) -> None:
        assert self._consumer is not None
        end = (await self._consumer.end_offsets([self._topic]))[self._topic]
        async with asyncio.timeout(timeout):
            while await self._consumer.position(self._topic) < end:
                await self._changed.wait()


async def register_definition(
    kafka: KafkaAccess, topic: str, definition: WorkflowDefinition
) -> bool:
    """Publish a validated definition. Returns False when this exact version is already
    registered; raises DefinitionConflict when it is registered with another body."""
    catalog = DefinitionCatalog(kafka, topic)
    await catalog.start()
    try:
        await catalog.caught_up()
        existing = catalog.get(definition.id, definition.version)
    finally:
        await catalog.stop()
    if existing is not None:
        if existing == definition:
            return False
        raise DefinitionConflict(
            f"{definition.id} version {definition.version} is already registered with another "
            "body; register it as a new version"
        )
    body = definition_to_dict(definition)
    record: dict[str, Any] = {
        "event_id": f"{definition.id}:{definition.version}",
        "workflow_id": definition.id,
        "workflow_version": definition.version,
        "definition_json": json.dumps(body, separators=(",", ":")),
        "timestamp": now_ms(),
    }
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            CODEC.encode("WorkflowDefinitionRegistered", record),
            key=record["event_id"].encode(),
        )
    finally:
        await producer.stop()
    return True
