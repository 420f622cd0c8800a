"""The one timer class (`streams.due_events`): a timer fires once, never early, earliest
first, as the event it was armed with."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.streams.due_events import DueEvents


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 1_000), max_size=30), st.lists(st.integers(0, 1_200), max_size=8))
def test_each_timer_fires_once_never_early_earliest_first(
    dues: list[int], clocks: list[int]
) -> None:
    timers = DueEvents()
    for n, due in enumerate(dues):
        timers.arm(due, "topic", f"key-{n}", "Due", {"n": n})
    fired: list[tuple[int, int]] = []  # (due, n)
    for now in [*sorted(clocks), 1_000]:
        for event in timers.take_due(now):
            assert event.due_ms <= now  # never early
            fired.append((event.due_ms, event.record["n"]))
    assert sorted(fired) == fired  # earliest first; ties in the order armed
    assert sorted(n for _, n in fired) == list(range(len(dues)))  # each once
    assert len(timers) == 0


def test_fire_sends_what_was_armed() -> None:
    sent: list[tuple[str, str, str, dict[str, Any]]] = []

    async def send(topic: str, key: str, name: str, record: dict[str, Any]) -> None:
        sent.append((topic, key, name, record))

    timers = DueEvents()
    timers.arm(20, "executions", "e1", "StepRetryDue", {"timestamp": 20})
    timers.arm(10, "workflow-start", "acme", "RateLimitWake", {"timestamp": 10})
    assert asyncio.run(timers.fire(15, send)) == 1
    assert sent == [("workflow-start", "acme", "RateLimitWake", {"timestamp": 10})]
    assert asyncio.run(timers.fire(25, send)) == 1 and sent[-1][1] == "e1"
