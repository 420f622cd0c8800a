"""A flood of one warning becomes its first line and a count."""

from __future__ import annotations

import logging

from stepstream.streams.log_throttle import RepeatThrottle


def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", level, __file__, 1, msg, ("node 1",), None)


def test_repeats_within_the_window_are_counted_and_reported_once_it_has_passed() -> None:
    now = [0.0]
    throttle = RepeatThrottle(window=10, clock=lambda: now[0])
    assert throttle.filter(record("Unable connect to %s"))
    passed = [throttle.filter(record("Unable connect to %s")) for _ in range(10_000)]
    assert not any(passed)
    now[0] = 10.0
    summary = record("Unable connect to %s")
    assert throttle.filter(summary)
    assert summary.getMessage() == (
        "Unable connect to node 1 [repeated 10000 more times in the last 10 s]"
    )


def test_other_lines_and_info_lines_pass() -> None:
    throttle = RepeatThrottle(window=10, clock=lambda: 0.0)
    assert throttle.filter(record("Unable connect to %s"))
    assert throttle.filter(record("Heartbeat failed: %s"))
    other_node = record("Unable connect to %s")
    other_node.args = ("node 2",)
    assert throttle.filter(other_node)
    assert all(throttle.filter(record("Worker ready %s", logging.INFO)) for _ in range(3))
