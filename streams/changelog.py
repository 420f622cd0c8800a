"""Table writes that go to the producer directly, not through faust's producer buffer.

`table[key] = value` writes the store at once and puts the changelog record in faust's
producer buffer, which a background task sends one record at a time. While more than 100
records wait there, faust's conductor stops handing fetched events to every agent of the
worker until the buffer ebbs ("producer buffer full" in the log). The coordinator writes
hundreds of checkpoints per batch, so the whole worker stalled in turns: measured here,
no step released for 0.3-1.8 s every few seconds at saturation.

`put` writes the store the same way (in the current event's partition) and keeps the
record; `send` hands the kept records to faust's producer in order, as `Engine.send`
does for events. What faust's path also does is kept: the record goes to the table's
changelog partition (the event's), and its offset is saved as the store's persisted
offset at the next commit (faust_fixes, correction 7). The producer is flushed before
every commit, and a record not delivered fails that flush (correction 3), so offsets are
committed only after the checkpoints they led to are in the changelog.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.types import StoreT, TableT


class Changelog:
    def __init__(self, app: faust.App, table: TableT[bytes, Any]) -> None:
        self.app = app
        self.table = table
        self.topic = table.changelog_topic.get_topic_name()
        self.unsent: list[tuple[bytes, bytes | None, int]] = []

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        """Write the store now (inside the event whose partition it is); the changelog
        record goes with the next `send`."""
        self.table.data[key] = value
        self.unsent.append((key, value, partition))

    def delete(self, key: bytes, partition: int) -> None:
        """Delete from the store now; the tombstone goes with the next `send` (compaction
        then removes the key from the changelog)."""
        if self.table.data.get(key) is not None:
            del self.table.data[key]
        self.unsent.append((key, None, partition))

    async def send(self) -> None:
        producer = await self.app.maybe_start_producer()
        unsent, self.unsent = self.unsent, []
        for key, value, partition in unsent:
            delivery = await producer.send(self.topic, key, value, partition, None, None)
            delivery.add_done_callback(self._persisted)

    def _persisted(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            return  # the flush before the next commit raises it
        sent = delivery.result()
        store = cast(StoreT[bytes, Any], self.table.data)
        self.app.tables.persist_offset_on_commit(store, sent.topic_partition, sent.offset)
