"""What the producer flush before a commit waits for (streams.faust_fixes, correction 3):
every record handed over before the flush began, and not the records sent while it
waits, which belong to events of a later commit."""

from __future__ import annotations

import asyncio

import pytest

from stepstream.streams.faust_fixes.flush_waits_for_delivery import DeliveryFailed, Unsettled


async def test_a_flush_waits_for_the_records_sent_before_it_and_not_after() -> None:
    unsettled = Unsettled()
    loop = asyncio.get_running_loop()
    before = loop.create_future()
    unsettled.track(before)
    settling = asyncio.ensure_future(unsettled.settle())
    await asyncio.sleep(0)  # one turn of the loop: the flush has begun waiting
    assert not settling.done()
    after = loop.create_future()
    unsettled.track(after)  # sent while the flush waits
    before.set_result(None)
    await asyncio.wait_for(settling, timeout=5)
    assert not after.done()
    after.set_result(None)
    await asyncio.wait_for(unsettled.settle(), timeout=5)
    assert not unsettled.pending


async def test_a_record_that_was_not_delivered_fails_the_flush_once() -> None:
    unsettled = Unsettled()
    lost = asyncio.get_running_loop().create_future()
    unsettled.track(lost)
    lost.set_exception(ConnectionError("broker gone"))
    with pytest.raises(DeliveryFailed, match="broker gone"):
        await unsettled.settle()
    await unsettled.settle()  # reported once; the next commit may go ahead
