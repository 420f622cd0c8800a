"""A flood of one warning becomes its first line and a count, written when its window
closes, whether or not the line comes back."""

from __future__ import annotations

import io
import logging

from mode.utils.logging import ExtensionFormatter

from stepstream.streams.log_throttle import RepeatThrottle, install
from tests.waiting import repeat_until


def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", level, __file__, 1, msg, ("node 1",), None)


def test_the_count_is_due_when_the_window_closes_though_the_line_never_returns() -> None:
    now = [0.0]
    throttle = RepeatThrottle(window=10, clock=lambda: now[0])
    assert throttle.filter(record("Unable connect to %s"))
    passed = [throttle.filter(record("Unable connect to %s")) for _ in range(10_000)]
    assert not any(passed)
    now[0] = 9.9
    assert throttle.due() == []  # the window is still open
    now[0] = 10.0
    [line] = throttle.due()
    assert line.getMessage().startswith("Unable connect to node 1 [repeated 10000 more times")
    assert "in the 10 s after" in line.getMessage()
    assert line.levelno == logging.ERROR and line.name == "aiokafka"
    assert throttle.due() == []  # said once
    assert throttle.filter(line)  # a count line is never throttled itself
    ExtensionFormatter().format(line)  # faust's formatter, which turns `args=None` into (None,)


def test_a_late_repeat_carries_the_count_of_its_window_if_no_flush_came() -> None:
    now = [0.0]
    throttle = RepeatThrottle(window=10, clock=lambda: now[0])
    throttle.filter(record("Unable connect to %s"))
    throttle.filter(record("Unable connect to %s"))
    now[0] = 151.0
    late = record("Unable connect to %s")
    assert throttle.filter(late)
    assert "[repeated 1 more times in the 10 s after" in late.getMessage()


def test_other_lines_and_info_lines_pass() -> None:
    throttle = RepeatThrottle(window=10, clock=lambda: 0.0)
    assert throttle.filter(record("Unable connect to %s"))
    assert throttle.filter(record("Heartbeat failed: %s"))
    other_node = record("Unable connect to %s")
    other_node.args = ("node 2",)
    assert throttle.filter(other_node)
    assert all(throttle.filter(record("Worker ready %s", logging.INFO)) for _ in range(3))


def test_installed_the_flusher_writes_the_count_without_another_line() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("throttle-test")
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # whatever earlier tests left on the root logger
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    install(logger, window=0.3)
    for _ in range(50):
        logger.error("broker %s down", 2)
    written = repeat_until(stream.getvalue, lambda text: "repeated" in text, timeout=10)
    assert "broker 2 down [repeated 49 more times in the 0.3 s after" in written
    assert written.count("broker 2 down") == 2  # the line, then its count
    logger.removeHandler(handler)
    logging.disable(disabled)
