"""Regression test for the producer flush corrected in streams.faust_fixes (3): faust
flushes its producer before it commits offsets, so when `flush` returns, every record
sent through faust's producer, table changelog writes included, must be acknowledged by
the broker. Without the correction the buffer's flush returned with records still in
flight, and a worker killed after the commit lost checkpoints."""

from __future__ import annotations

import asyncio
import time

import faust

from stepstream.streams import faust_fixes
from stepstream.streams.settings import Settings


async def test_flush_returns_once_every_buffered_and_direct_record_is_acknowledged(
    settings: Settings, kafka_bootstrap: str, run_token: str
) -> None:
    faust_fixes.apply()
    app = faust.App(f"test-{run_token}-flush", broker=f"kafka://{kafka_bootstrap}")
    producer = await app.maybe_start_producer()
    try:
        for round_ in range(3):
            # A topic the producer has no metadata for yet: the first send waits for it
            # (the broker creates the topic), as a send waits when the broker is slow.
            name = f"test-{run_token}-flush-{round_}"
            topic = app.topic(name, key_serializer="raw", value_serializer="raw")
            # The way a table writes its changelog: through the producer's buffer.
            buffered = [topic.send_soon(key=b"k", value=b"%d" % n) for n in range(300)]
            direct = [
                await producer.send(name, b"k", b"direct", None, None, None) for _ in range(50)
            ]
            await producer.flush()
            unsettled = [f for f in [*buffered, *direct] if not f.done()]
            assert not unsettled, f"{len(unsettled)} records still in flight after flush"
            assert all(f.exception() is None for f in [*buffered, *direct])
    finally:
        await producer.stop()


async def test_a_flush_returns_while_records_keep_being_sent(
    settings: Settings, kafka_bootstrap: str, run_token: str
) -> None:
    """At saturation the coordinator keeps sending while faust flushes before a commit.
    The flush waits for what was sent before it began; waiting until nothing at all was
    pending held commits for 6-12 s, and the progress guard took the partitions for
    stalled."""
    faust_fixes.apply()
    app = faust.App(f"test-{run_token}-busy-flush", broker=f"kafka://{kafka_bootstrap}")
    producer = await app.maybe_start_producer()
    name = f"test-{run_token}-busy-flush"
    try:
        before = [await producer.send(name, b"k", b"before", None, None, None) for _ in range(200)]
        flushing = asyncio.ensure_future(producer.flush())
        deadline = time.monotonic() + 30
        sent_during = 0
        while not flushing.done() and time.monotonic() < deadline:
            await producer.send(name, b"k", b"during", None, None, None)
            sent_during += 1
        assert flushing.done(), f"the flush was still waiting after {sent_during} later records"
        await flushing
        assert all(f.done() and f.exception() is None for f in before)
        await producer.flush()
    finally:
        await producer.stop()
