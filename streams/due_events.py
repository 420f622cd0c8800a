"""Events to publish at a wall-clock time: step retries and timeouts, rate-limit wakes,
and the waits to come.

A timer fires as an event on its key's partition, not as a call: only the agent that
owns the partition may write its state, and the event reaches it there, whichever
worker owns it by then. Timers live in memory; the agent that arms them re-arms them
from its state when it takes partitions over, so what a timer stands for is never lost
with a worker (the event is deterministic: a timer armed twice fires a duplicate that
the agent ignores).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Send = Callable[[str, str, str, dict[str, Any]], Awaitable[object]]


@dataclass(order=True, frozen=True, slots=True)
class DueEvent:
    due_ms: int
    sequence: int  # breaks ties (steps released together fall due together)
    topic: str = field(compare=False)
    key: str = field(compare=False)
    name: str = field(compare=False)
    record: dict[str, Any] = field(compare=False)


class DueEvents:
    def __init__(self) -> None:
        self._heap: list[DueEvent] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, due_ms: int, topic: str, key: str, name: str, record: dict[str, Any]) -> None:
        heapq.heappush(self._heap, DueEvent(due_ms, next(self._sequence), topic, key, name, record))

    def take_due(self, now_ms: int) -> list[DueEvent]:
        """The events due at `now_ms`, earliest first, removed from the timers."""
        due = []
        while self._heap and self._heap[0].due_ms <= now_ms:
            due.append(heapq.heappop(self._heap))
        return due

    async def fire(self, now_ms: int, send: Send) -> int:
        """Send every due event; returns how many."""
        due = self.take_due(now_ms)
        for event in due:
            await send(event.topic, event.key, event.name, event.record)
        return len(due)
