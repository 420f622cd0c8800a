"""Repeated log lines, said once. With the broker down, aiokafka and faust log the same
connection error thousands of times a second (seen: 100,000+ ERROR lines in a 10 s
outage); an operator needs the first line, and then how often it repeated.

A warning or error whose logger and text were logged within the last `window` seconds is
dropped and counted; the first one after the window carries the count. Lines that differ
(another execution, another node) are not repeats.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatThrottle(logging.Filter):
    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.last: dict[tuple[str, str], tuple[float, int]] = {}  # (logged at, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # only warnings and errors flood; info lines are state changes
        key = (record.name, record.getMessage())
        now = self.clock()
        logged_at, dropped = self.last.get(key, (float("-inf"), 0))
        if now - logged_at < self.window:
            self.last[key] = (logged_at, dropped + 1)
            return False
        self.last[key] = (now, 0)
        if dropped:
            record.msg = (
                f"{record.msg} [repeated {dropped} more times in the last {self.window:g} s]"
            )
        if len(self.last) > 10_000:  # a bound on what it remembers
            self.last.clear()
        return True


def install(logger: logging.Logger, window: float = 10.0) -> None:
    """On every handler of `logger` (filters on handlers see records of child loggers)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatThrottle) for f in handler.filters):
            handler.addFilter(RepeatThrottle(window))
