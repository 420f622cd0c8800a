"""The executor's and persister's loops are started again, fresh, when they stop on an
error: faust drops an app task's exception silently, and a dead loop would leave its
partitions assigned and unconsumed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stepstream.streams.groups import keep_running


async def test_a_loop_that_fails_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts: list[int] = []

    async def loop() -> None:
        starts.append(len(starts))
        if len(starts) < 3:
            raise AssertionError("Partition is not assigned")

    with caplog.at_level(logging.ERROR):
        await keep_running("executor", loop, pause_seconds=0)
    assert starts == [0, 1, 2]
    assert caplog.text.count("executor stopped on an error; starting it again") == 2


async def test_cancelling_it_stops_it() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    running = asyncio.ensure_future(keep_running("persister", forever))
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
