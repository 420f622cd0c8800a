"""Correction 3: the flush before a commit waits for every record's delivery.

The producer flush before a commit waits for every record's delivery. faust flushes
its producer before it commits consumed offsets (`Consumer._commit_offsets`), but
`ProducerBuffer.flush` (the buffer table changelog writes go through) returns after any
0.1 s without progress and does not count the record its sender task has taken off the
queue but not yet handed to aiokafka; and a record whose delivery failed does not stop
the commit. Seen here: offsets committed past events whose checkpoint never reached the
changelog, after a SIGKILL. The fix tracks every record sent through faust's producer
(buffered or not) until the broker acknowledges it; `flush` waits for all of them and
raises if one failed, so the commit does not happen (delivery rule 1, "commit last").
It waits for the records sent before the flush began, not for those sent during it.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- ProducerBuffer.flush, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/producer.py
- Consumer._commit_offsets, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
Upstream: none found.
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/integration/test_producer_flush.py.
What a flush waits for, alone: tests/unit/test_unsettled.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, cast

from faust.transport.drivers.aiokafka import Producer
from faust.transport.producer import ProducerBuffer


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
        """Wait for the records handed over before this call, not for those sent while
        it waits: faust picks the offsets to commit before it flushes, and an event is
        acknowledged only after its records were handed over, so those are the ones a
        commit depends on. Waiting until nothing at all is pending held a commit for as
        long as the coordinator kept sending: 6-12 s at saturation, long enough for the
        progress guard to take the partitions for stalled and read them again."""
        if self.pending:
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


def apply() -> None:
    ProducerBuffer.put = _put  # type: ignore[method-assign]
    Producer.send = _send  # type: ignore[method-assign]
    Producer.flush = _flush  # type: ignore[method-assign]
