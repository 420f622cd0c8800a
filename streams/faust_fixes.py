"""Nine corrections to faust-streaming 0.15.3 (with aiokafka 0.14), applied when the
engine is created. On a faust upgrade, re-check each against the code it names; each
has a test that fails without it.

1. Paused partitions are paused in aiokafka too. faust pauses a partition only in its
own bookkeeping (it stops draining it) while aiokafka goes on fetching it. After table
recovery the changelog partitions stay paused like that, so every changelog write the
worker makes is fetched and left undrained, and aiokafka's fetcher then holds back the
next fetch from that broker for its `prefetch_backoff` (100 ms). Seen here: a third of
the coordinator's hops (StepCompleted -> StepReady) took ~100 ms on an idle engine,
while the executor's hops (plain aiokafka) stayed under 10 ms.

2. What goes wrong: while a rebalance recovers tables, faust drops the events it fetches
(flow control is off) and, once recovery is done, seeks every partition back to its
committed offset to fetch them again. aiokafka's `seek_to_committed` does not move a
partition that has no committed offset yet (it only seeks when the offset is > 0), so
on a partition nobody has committed, the dropped events are never fetched again. faust
then commits past them: its gap check (`Consumer._new_offset`) is skipped when the
committed offset is None. Seen here: a second worker joining while the first ran load
on fresh topics left 10-25% of the executions stuck at their WorkflowStarted (no
checkpoint, no StepReady), with the group's committed offsets past those events.

The fix: after faust's seek, partitions without a committed offset are sought to their
beginning (what `auto_offset_reset="earliest"` means for a new group), so the dropped
events are fetched again. Events processed twice are harmless: every agent is
idempotent.

3. The producer flush before a commit waits for every record's delivery. faust flushes
its producer before it commits consumed offsets (`Consumer._commit_offsets`), but
`ProducerBuffer.flush` (the buffer table changelog writes go through) returns after any
0.1 s without progress and does not count the record its sender task has taken off the
queue but not yet handed to aiokafka; and a record whose delivery failed does not stop
the commit. Seen here: offsets committed past events whose checkpoint never reached the
changelog, after a SIGKILL. The fix tracks every record sent through faust's producer
(buffered or not) until the broker acknowledges it; `flush` waits for all of them and
raises if one failed, so the commit does not happen (delivery rule 1, "commit last").

4. A fast path in the drain loop. For every consumed message faust's
`Consumer._drain_messages` awaits `wait_first(callback(message), suspend_flow.wait())`:
four tasks (the callback, the suspend event, the consumer's stopped and crashed events)
and an `asyncio.wait`, so that a callback blocked on a full channel queue can be
abandoned when a rebalance suspends the flow. The callback almost never blocks. The fix
runs it first without a task; only when it does block is the rest of it raced against
the suspend event as before. Measured here: worker CPU per step down 12-21%.

5. The offset to commit never skips an unacknowledged offset at the head. faust commits
the end of the first run of acknowledged offsets, after checking that the run starts at
the committed position; the check (`Consumer._new_offset`) let a gap of exactly one
offset pass (`min(acked) - committed > 1`) and was skipped when the committed offset was
0. Offsets can be acknowledged out of order around a rebalance (faust acknowledges the
events it skips while the flow is suspended, and the partition is then read again from
its committed offset); committing past the one unread offset loses it if the worker then
dies. Found by reading faust while chasing the one chaos run in which the watchdog had
to resume executions (their step completions were never applied); whether it caused
that run is not proven.

6. An event faust skips is not acknowledged. While a rebalance suspends the flow, and for
events fetched in an earlier consumer generation, faust's stream iterator skips the
event unprocessed and acknowledges it all the same ("otherwise the lag would
increase"). Its offset then counts as done: a commit can pass it before the partition,
read again from its committed offset after the rebalance, has processed it, and a
worker that dies in between has lost it (delivery rules 1 and 4). The fix records no
acknowledgement while the flow is suspended or for a message of an earlier generation;
such an offset is read again and acknowledged when it is processed.

7. A table's persisted changelog offset is saved at commit, not per record. For every
acknowledged changelog record faust writes "local store holds the changelog up to
offset N" into RocksDB (`Table._on_changelog_sent` -> `Store.set_persisted_offset`): one
RocksDB put and a str/encode per checkpoint written. faust has the deferral for
exactly-once (`TableManager.persist_offset_on_commit`), but its `on_commit` looks the
pending offsets up by the committed *source* partitions, never by the changelog
partitions they are kept under, so they would never be saved. The fix keeps the newest
acknowledged offset per changelog partition in memory and saves them all after each
successful commit (and so at a clean shutdown and at a rebalance, which commit). Safe:
the store itself is written before its changelog record is even sent, so the saved
offset never runs ahead of the store; one that lags only makes recovery read more of
the changelog. After a crash the local stores are wiped anyway (streams.local_store).

8. The livelock detector leaves paused partitions alone. Every few commit intervals faust
checks each assigned partition for a recent fetch request
(`Consumer.verify_all_partitions_active`) and logs an ERROR for each that has none. The
changelog partitions a worker writes but does not read are paused on purpose (and, since
correction 1, in aiokafka too), so an idle worker logged "Aiokafka has not sent fetch
request for TP(...changelog...)" for each of them, over and over (2,817 lines in 12
minutes). The fix checks only the partitions that are not paused.

9. The drain loop never drops an event as already read. faust's drain loop
(`Consumer._drain_messages`) drops every event below the partition's read offset, the
offset of the last event it delivered, which a seek resets to the committed offset.
After a rebalance that keeps a partition (no table recovery), faust resumes the flow
before it seeks the stream partitions (`Recovery._resume_streams`): events fetched
before the seek are still being delivered while it runs, each one moving the read
offset past the committed one again, and the events then read again from the committed
offset are dropped below it. Nothing acknowledges them: the commit stops there and they
are never processed, with no error, while aiokafka's position looks current (so faust's
livelock detector sees nothing). Seen in the chaos test, two or three runs in 25: a
partition's committed offset stuck for minutes below WorkflowStarted or StepCompleted
records that were never applied. The fix reads every read offset as unknown, so every
event fetched is delivered; one delivered twice is harmless (every agent is idempotent,
and correction 5 commits an offset acknowledged twice once). The drain loop's "gaps"
go with it; correction 5 ignores them anyway.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from time import monotonic
from typing import Any, cast

from faust.tables.base import Collection
from faust.tables.manager import TableManager
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer
from faust.transport.producer import ProducerBuffer
from faust.utils.functional import consecutive_numbers
from mode.services import Service, WaitResults


async def _seek_to_committed_or_beginning(consumer: Any) -> Mapping[Any, int]:
    committed: Mapping[Any, int] = await consumer.seek_to_committed()
    never_committed = [tp for tp, offset in committed.items() if not offset]
    if never_committed:
        await consumer.seek_to_beginning(*never_committed)
    return committed


async def _seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[Any, int]:
    """Replaces `AIOKafkaConsumerThread.seek_to_committed` (runs in faust's consumer
    thread, like the original)."""
    result: Mapping[Any, int] = await self.call_thread(
        _seek_to_committed_or_beginning, self._ensure_consumer()
    )
    return result


def _in_aiokafka(consumer: Consumer, method: str, tps: Any) -> None:
    """Call aiokafka's `pause`/`resume` for the assigned ones of `tps`, in faust's consumer
    thread (aiokafka is not thread-safe)."""
    if not isinstance(consumer, ThreadDelegateConsumer):
        return
    thread = cast(AIOKafkaConsumerThread, consumer._thread)  # noqa: SLF001 - faust internals
    tps = set(tps)

    def call() -> None:
        kafka = thread._consumer  # noqa: SLF001
        if kafka is None:
            return
        assigned = kafka.assignment()
        targets = [tp for tp in assigned if tp in tps]
        if targets:
            getattr(kafka, method)(*targets)

    thread.thread_loop.call_soon_threadsafe(call)


_pause_partitions = Consumer.pause_partitions
_resume_partitions = Consumer.resume_partitions


def _pause(self: Consumer, tps: Any) -> None:
    tps = list(tps)
    _pause_partitions(self, tps)
    _in_aiokafka(self, "pause", tps)


def _resume(self: Consumer, tps: Any) -> None:
    tps = list(tps)
    _resume_partitions(self, tps)
    _in_aiokafka(self, "resume", tps)


class DeliveryFailed(RuntimeError):
    """A record sent before a commit was not acknowledged: the commit must not happen."""


class Unsettled:
    """Records handed to a producer and not yet acknowledged by the broker."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future[Any]] = set()
        self.failure: BaseException | None = None

    def track(self, future: asyncio.Future[Any]) -> None:
        self.pending.add(future)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[Any]) -> None:
        self.pending.discard(future)
        if self.failure is None and (future.cancelled() or future.exception() is not None):
            self.failure = asyncio.CancelledError() if future.cancelled() else future.exception()

    async def settle(self) -> None:
        while self.pending:
            await asyncio.wait(list(self.pending))
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise DeliveryFailed(f"a record was not delivered: {failure!r}") from failure


def unsettled(owner: object) -> Unsettled:
    tracker: Unsettled | None = owner.__dict__.get("_stepstream_unsettled")
    if tracker is None:
        tracker = owner.__dict__["_stepstream_unsettled"] = Unsettled()
    return tracker


_buffer_put = ProducerBuffer.put
_producer_send = Producer.send
_producer_flush = Producer.flush


def _put(self: ProducerBuffer, fut: Any) -> None:
    unsettled(self).track(fut)  # resolved by faust once the broker acknowledges it
    _buffer_put(self, fut)


async def _send(self: Producer, *args: Any, **kwargs: Any) -> Awaitable[Any]:
    delivery = await _producer_send(self, *args, **kwargs)
    unsettled(self).track(cast(asyncio.Future[Any], delivery))
    return delivery


async def _flush(self: Producer) -> None:
    await _producer_flush(self)
    await unsettled(self.buffer).settle()
    await unsettled(self).settle()


@types.coroutine
def _finish(coroutine: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Drive a coroutine that has already yielded `pending` to its driver, to its end:
    what a task would have done had it run the coroutine from the start."""
    while True:
        try:
            sent = yield pending
        except BaseException as error:  # noqa: BLE001 - cancellation goes into the coroutine
            try:
                pending = coroutine.throw(error)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


_service_wait_first = Service.wait_first


async def _wait_first(self: Consumer, *coros: Any, timeout: Any = None) -> WaitResults:
    """`Consumer.wait_first`, called only by the drain loop as
    `wait_first(callback(message), suspend_flow.wait())`."""
    first = coros[0]
    if not inspect.iscoroutine(first) or self.suspend_flow.is_set():
        return await _service_wait_first(self, *coros, timeout=timeout)
    try:
        pending = first.send(None)
    except StopIteration as stop:  # done without blocking: the common case
        for other in coros[1:]:
            if inspect.iscoroutine(other):
                other.close()
        return WaitResults([first], [stop.value], False)

    async def rest() -> Any:
        return await _finish(first, pending)

    return await _service_wait_first(self, rest(), *coros[1:], timeout=timeout)


def _new_offset(self: Consumer, tp: Any) -> int | None:
    """`Consumer._new_offset` (faust 0.15.3) with its head-gap check corrected: the
    offset to commit, the end of the first run of acknowledged offsets, only if that run
    starts at the committed position. faust's check let one unacknowledged offset at the
    head pass (`min(acked) - committed > 1`) and skipped the check when the committed
    offset was 0. Stricter than faust: an offset missing from the log (compaction) would
    hold the commit back; faust commits no compacted topic of ours (the agents consume
    delete-retention topics; tables read their changelogs uncommitted).
    """
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    # faust also counts the "gaps" its drain loop records (a jump between the offsets it
    # reads, meant for compacted topics and transaction markers) as acknowledged. Our
    # agents read delete-retention topics without transactions, where the log has every
    # offset; a jump there means events were skipped around a rebalance, and counting it
    # committed them unprocessed (seen in the chaos test: WorkflowStarted records
    # committed past with no checkpoint and no StepReady). Gaps are ignored.
    self._gap[tp].clear()
    committed = self._committed_offset[tp]
    # An offset acknowledged in two consumer generations (read again after a rebalance)
    # can be in the list twice, and offsets already committed can linger: either one
    # splits every run into runs of one, and the commit then crawls one offset at a
    # time (seen in the chaos test: one offset per second, 270 waiting).
    acked[:] = sorted({o for o in acked if committed is None or o >= committed})
    if not acked:
        return None
    if committed is not None and acked[0] > committed:
        return None  # the next offset to commit has not been acknowledged yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


_consumer_ack = Consumer.ack


def _ack(self: Consumer, message: Any) -> bool:
    app = self.app
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        return False  # skipped unprocessed, or from before a rebalance: read again later
    return bool(_consumer_ack(self, message))


def _on_changelog_sent(self: Collection, fut: Any) -> None:
    result = fut.result()
    self.app.tables.persist_offset_on_commit(self.data, result.topic_partition, result.offset)


def _on_commit(self: TableManager, offsets: Any) -> None:
    pending, self._pending_persisted_offsets = self._pending_persisted_offsets, {}
    for tp, (store, offset) in pending.items():
        store.set_persisted_offset(tp, offset)


async def _verify_all_partitions_active(self: Consumer) -> None:
    now = monotonic()
    for tp in self.assignment() - self._paused_partitions:
        await self.sleep(0)
        if not self.should_stop:
            self.verify_event_path(now, tp)


class _NothingRead(dict[Any, int | None]):
    """faust's read offsets, still kept (seeks write them) but read as unknown."""

    def __getitem__(self, tp: Any) -> None:
        return None


_faust_drain_messages = Consumer._drain_messages  # noqa: SLF001 - faust internals


async def _drain_messages(self: Consumer, fetcher: Any) -> None:
    self._read_offset = _NothingRead()
    await _faust_drain_messages(self, fetcher)


def apply() -> None:
    Collection._on_changelog_sent = _on_changelog_sent  # type: ignore[method-assign]  # noqa: SLF001
    TableManager.on_commit = _on_commit  # type: ignore[method-assign]
    Consumer.ack = _ack  # type: ignore[method-assign]
    Consumer.wait_first = _wait_first  # type: ignore[method-assign,assignment]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]  # noqa: SLF001
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]  # noqa: SLF001
    ProducerBuffer.put = _put  # type: ignore[method-assign]
    Producer.send = _send  # type: ignore[method-assign]
    Producer.flush = _flush  # type: ignore[method-assign]
    Consumer.pause_partitions = _pause  # type: ignore[method-assign]
    Consumer.resume_partitions = _resume  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer.verify_all_partitions_active = _verify_all_partitions_active  # type: ignore[method-assign]
