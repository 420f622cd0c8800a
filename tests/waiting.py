"""Waiting in tests: on a condition with a deadline, or on a schedule that a stop cuts
short. Nothing else in the tests pauses."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

POLL_SECONDS = 0.2
T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout: float,
    what: str,
    every: float = POLL_SECONDS,
) -> Any:
    """The condition's first true value (it may be a coroutine function); TimeoutError
    naming `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        await asyncio.sleep(every)  # polling with a deadline


def repeat_until(
    attempt: Callable[[], T],
    satisfied: Callable[[T], bool],
    timeout: float,
    every: float = POLL_SECONDS,
) -> T:
    """Run `attempt` until its value satisfies `satisfied` or `timeout` passes; the last
    value either way (a caller that asserts on it then shows what it last saw)."""
    deadline = time.monotonic() + timeout
    while True:
        value = attempt()
        if satisfied(value) or time.monotonic() > deadline:
            return value
        time.sleep(every)  # polling with a deadline


async def on_schedule(seconds: float, stop: asyncio.Event) -> bool:
    """Let `seconds` of a fault schedule pass, or fewer if the run is told to stop: True
    when it was. The schedule is the behaviour under test, not synchronisation."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def until_moment(moment: float) -> None:
    """Let a load's or a fault's schedule reach `moment` (time.monotonic()): the pace of
    starts, how long a service stays down. The schedule is the behaviour, not a wait."""
    ahead = moment - time.monotonic()
    if ahead > 0:
        await asyncio.sleep(ahead)


def hold_for(seconds: float) -> None:
    """A fault's duration, for synchronous tests (`until_moment`'s twin)."""
    asyncio.run(until_moment(time.monotonic() + seconds))
