"""faust correction 4: the drain loop's callback runs without tasks when it does not
block, and when it does, it is finished in a task and still loses to a suspended flow."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from stepstream.streams.faust_fixes.drain_fast_path import _finish, _wait_first


class Consumer(SimpleNamespace):
    """What `_wait_first` uses of faust's consumer (mode's `wait_first` needs a loop and
    its stopped and crashed events)."""

    def __init__(self) -> None:
        super().__init__(
            suspend_flow=asyncio.Event(),
            _stopped=asyncio.Event(),
            _crashed=asyncio.Event(),
            loop=asyncio.get_running_loop(),
        )


def counting_tasks() -> list[Any]:
    created: list[Any] = []
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    return created


async def test_a_callback_that_does_not_block_creates_no_task() -> None:
    consumer = Consumer()
    created = counting_tasks()
    delivered = []

    async def callback(message: str) -> str:
        delivered.append(message)
        return message

    results = await _wait_first(consumer, callback("m1"), consumer.suspend_flow.wait())
    assert delivered == ["m1"] and results.results == ["m1"] and not results.stopped
    assert created == []


async def test_a_blocked_callback_is_finished_or_abandoned_when_the_flow_is_suspended() -> None:
    consumer = Consumer()
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
    queue.put_nowait("full")

    async def callback(message: str) -> None:
        await queue.put(message)  # blocks: the queue is full

    finished = asyncio.ensure_future(
        _wait_first(consumer, callback("m1"), consumer.suspend_flow.wait())
    )
    await asyncio.sleep(0)
    assert queue.get_nowait() == "full"  # room again: the callback can finish
    await finished
    assert queue.get_nowait() == "m1"

    queue.put_nowait("full")
    abandoned = asyncio.ensure_future(
        _wait_first(consumer, callback("m2"), consumer.suspend_flow.wait())
    )
    await asyncio.sleep(0)
    consumer.suspend_flow.set()  # a rebalance: the blocked callback must not hold the loop
    results = await abandoned
    assert results.done == [] or results.results == [True]
    assert queue.qsize() == 1 and queue.get_nowait() == "full"


async def test_finish_passes_values_and_exceptions_through() -> None:
    async def two_steps() -> int:
        await asyncio.sleep(0)
        value = await asyncio.sleep(0, result=20)
        return value + 1

    coroutine = two_steps()
    pending = coroutine.send(None)

    async def rest() -> int:
        return await _finish(coroutine, pending)

    assert await rest() == 21
