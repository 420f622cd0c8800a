"""Batches of a faust stream's events, handed over as soon as nothing more is waiting.

faust's `Stream.take_events(max_, within)` hands a batch over when it holds `max_` events
or when `within` has passed. Under light load that makes every event wait out `within`
(10 ms per coordinator hop, on every step), and under heavy load it adds nothing: events
queue up while a batch is handled anyway. `take_available` is faust-streaming 0.15.3's
`take_events`, with one change: a batch is also handed over once the stream's queue is
empty after an event joined it. Batches stay as large as the load makes them, up to
`max_`, and `within` remains the bound while events keep arriving.

Everything else is faust's own: the buffer is filled by a processor in the stream's
passive drainer, acknowledgements are disabled for the stream and each event is acked
after its batch, whatever the consumer did with it (so per-event errors must be handled
in the batch's body), and the drainer waits while a batch is being consumed. On a faust
upgrade, compare `take_events` with this copy (tests/integration/test_batches.py checks
the behaviour on a real stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import faust
from faust.types import ChannelT, EventT
from mode.utils.futures import notify


async def take_available(
    stream: faust.Stream[Any], max_: int, within: float
) -> AsyncIterator[list[EventT[Any]]]:
    events: list[EventT[Any]] = []
    buffer_full = asyncio.Event()  # a batch is ready: full, or nothing more waits
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    stream_enable_acks = stream.enable_acks
    channel_it = cast(ChannelT[Any], aiter(stream.channel))
    waiting = channel_it.queue

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take buffer found current_event is None")
            events.append(event)
            if len(events) >= max_:
                buffer_full.set()
                buffer_consumed.clear()  # never more than max_: wait until it is taken
                await stream.wait(buffer_consumed)  # type: ignore[arg-type]
            elif waiting.empty():
                buffer_full.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # acked here, after the batch is consumed
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)  # noqa: SLF001 - as take_events does
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(buffer_full, timeout=within)  # type: ignore[arg-type]
            if events:
                buffer_consuming = stream.loop.create_future()
                try:
                    yield list(events)
                finally:
                    for event in events:
                        await stream.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)  # noqa: SLF001
