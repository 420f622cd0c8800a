"""faust correction 9: the drain loop never drops an event as "already read".

The race it closes: after a rebalance that keeps a partition (no table recovery), faust
resumes the flow before it seeks the stream partitions back to their committed offsets.
Events fetched before the seek are still being delivered while the seek runs; each one
sets faust's read offset past the committed one again, and the drain loop then drops
every event read again from the committed offset below it. Nobody acknowledges them,
so the commit stops there and the events are never processed (seen in the chaos test:
a partition's committed offset stuck for minutes, its events never applied, no error).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from mode.utils.logging import CompositeLogger

from stepstream.streams.faust_fixes import drain_read_offsets

PARTITION = TP("stepstream.executions", 2)
COMMITTED = 36


class StubConsumer(SimpleNamespace):
    """What faust's `Consumer._drain_messages` uses of its consumer. It delivers the
    batches in turn; `perform_seek` finishes while the first batch's second event is
    being delivered."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.delivered: list[int] = []
        fetches: Iterator[list[int]] = iter(batches)
        stopped = asyncio.Event()

        async def getmany(timeout: float) -> AsyncIterator[tuple[TP, Any]]:
            batch = next(fetches, None)
            if batch is None:
                stopped.set()
                return
            for offset in batch:
                yield (
                    PARTITION,
                    SimpleNamespace(offset=offset, topic=PARTITION.topic, key=None, value=None),
                )

        async def callback(message: Any) -> None:
            self.delivered.append(message.offset)
            if len(self.delivered) == 2:
                self._read_offset[PARTITION] = COMMITTED  # what perform_seek sets

        async def wait_first(*coros: Any) -> None:
            await coros[0]
            coros[1].close()

        async def sleep(seconds: float) -> None:
            await asyncio.sleep(0)

        async def add_gap(tp: TP, start: int, end: int) -> None:
            pass

        super().__init__(
            callback=callback,
            getmany=getmany,
            _stopped=stopped,
            _read_offset=defaultdict(lambda: None),
            _add_gap=add_gap,
            diag=SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None),
            _commit_every=None,
            app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)),
            sleep=sleep,
            should_stop=False,
            wait_first=wait_first,
            suspend_flow=asyncio.Event(),
            consumer_stopped_errors=(),
            log=CompositeLogger(logging.getLogger("faust.drain")),
        )


async def drain(drain_messages: Callable[..., Any]) -> list[int]:
    """Deliver a batch fetched before the seek, then the same offsets read again from
    the committed one; returns the offsets delivered after the seek."""
    fetched = list(range(COMMITTED, COMMITTED + 5))
    consumer = StubConsumer([fetched, fetched])
    await drain_messages(consumer, SimpleNamespace(_stopped=consumer._stopped))
    return consumer.delivered[2:]


async def test_faust_drops_the_events_read_again_after_a_seek_that_races_delivery() -> None:
    after_seek = await drain(Consumer._drain_messages)
    # The rest of the stale batch moved the read offset to 40: of the five events read
    # again from 36, faust delivers only the last.
    assert after_seek == [38, 39, 40, 40]


async def test_every_event_read_again_after_the_seek_is_delivered() -> None:
    after_seek = await drain(drain_read_offsets._drain_messages)
    assert after_seek == [38, 39, 40, 36, 37, 38, 39, 40]
