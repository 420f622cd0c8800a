"""Issue 23: after a clean scale-in, 512 start requests of one partition never started,
the engine group's commit standing at the first of them for good.

The cause, reproduced with faust's own `Recovery.on_recovery_completed`,
`Consumer.perform_seek` and mode's flow-control queues: the recovery seeks the stream
partitions back to their committed offsets while the consumer's flow runs (it was
resumed to read the changelogs), and then `flow_control.resume()` clears the streams'
queues. What the drain loop fetched between the seek and the clear, the first records
after the committed offset, is thrown away and never fetched again. Correction 10
(`streams.faust_fixes.seek_with_flow_stopped`) stops the flow before that seek.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.types import TP
from mode.utils.locks import Event
from mode.utils.logging import CompositeLogger
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from stepstream.streams.faust_fixes import seek_with_flow_stopped

PARTITION = TP("stepstream.workflow-start", 0)
COMMITTED, END = 2423, 2935  # the offsets seen: 512 records past the commit


class FetchingConsumer(SimpleNamespace):
    """What `on_recovery_completed` and `perform_seek` use of faust's consumer; `position`
    is the next offset its fetcher hands to the drain loop."""

    def __init__(self, app: Any, perform_seek: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__(
            app=app,
            flow_active=True,  # resumed by the recovery, to read the changelogs
            can_resume_flow=Event(),
            suspend_flow=Event(),
            _read_offset=defaultdict(lambda: None),
            _committed_offset=defaultdict(lambda: None),
            position=None,
            log=CompositeLogger(logging.getLogger("faust.consumer")),
        )
        self._perform_seek = perform_seek

    def assignment(self) -> set[TP]:
        return {PARTITION}

    def resume_partitions(self, tps: set[TP]) -> None:
        return None

    def stop_flow(self) -> None:
        Consumer.stop_flow(self)  # type: ignore[arg-type]

    def resume_flow(self) -> None:
        Consumer.resume_flow(self)  # type: ignore[arg-type]

    async def perform_seek(self) -> None:
        await self._perform_seek(self)

    async def seek_to_committed(self) -> dict[TP, int]:
        self.position = COMMITTED
        for _ in range(3):  # the round trip through faust's consumer thread
            await asyncio.sleep(0)
        return {PARTITION: COMMITTED}


async def drain(consumer: FetchingConsumer, queue: FlowControlQueue[int]) -> None:
    """faust's drain loop, reduced: while the flow runs, fetched records go into the
    stream's queue, one by one."""
    while True:
        if consumer.flow_active and consumer.position is not None and consumer.position < END:
            queue.put_nowait(consumer.position)
            consumer.position += 1
        await asyncio.sleep(0)


async def recover(perform_seek: Callable[[Any], Awaitable[None]]) -> list[int]:
    """Run faust's end of recovery while the drain loop runs; return the offsets the
    stream is handed afterwards."""
    flow_control = FlowControlEvent()
    flow_control.resume()
    queue: FlowControlQueue[int] = FlowControlQueue(flow_control=flow_control, clear_on_resume=True)

    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    async def wait(coro: Awaitable[Any], timeout: float) -> Any:
        return await coro

    app = SimpleNamespace(
        on_rebalance_complete=SimpleNamespace(send=nothing),
        consumer_generation_id=7,
        flow_control=flow_control,
        _fetcher=SimpleNamespace(maybe_start=nothing),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        conf=SimpleNamespace(broker_request_timeout=5.0),
        on_rebalance_end=lambda: None,
    )
    consumer = FetchingConsumer(app, perform_seek)
    app.consumer = consumer
    recovery = SimpleNamespace(
        app=app,
        log=CompositeLogger(logging.getLogger("faust.recovery")),
        _set_recovery_ended=lambda: None,
        tables=SimpleNamespace(
            values=lambda: [], on_actives_ready=lambda: None, on_standbys_ready=lambda: None
        ),
        actives_for_table={},
        standbys_for_table={},
        _is_changelog_tp=lambda tp: False,
        _wait=wait,
        completed=Event(),
    )
    drainer = asyncio.create_task(drain(consumer, queue))
    try:
        await Recovery.on_recovery_completed(recovery, generation_id=7)  # type: ignore[arg-type]
        while consumer.position is None or consumer.position < END:
            await asyncio.sleep(0)  # the drain loop reads on to the end
    finally:
        drainer.cancel()
    return list(queue._queue)  # type: ignore[attr-defined]


async def test_faust_throws_away_the_first_records_fetched_after_its_seek() -> None:
    handed = await recover(Consumer.perform_seek)
    assert handed[-1] == END - 1
    assert handed[0] > COMMITTED  # the head is gone: the commit can never pass it


async def test_with_the_flow_stopped_every_record_from_the_commit_is_handed_over() -> None:
    handed = await recover(seek_with_flow_stopped._perform_seek)
    assert handed == list(range(COMMITTED, END))
