"""Repeated log lines, said once. With the broker down, aiokafka and faust log the same
connection error thousands of times a second (seen: 100,000+ ERROR lines in a 10 s
outage); an operator needs the first line, and then how often it repeated.

A warning or error whose logger and text were logged within the last `window` seconds is
dropped and counted. When the window closes, a flusher thread writes one line with the
count, stamped then; a line that never comes back is counted all the same. Lines that
differ (another execution, another node) are not repeats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FLUSH_EVERY_SECONDS = 1.0
SUMMARY = "throttled_summary"  # the attribute that marks a count line


@dataclass
class _Seen:
    logged_at: float  # on the throttle's clock
    wall: float  # the line's own time, for the count line's text
    dropped: int = 0
    last: logging.LogRecord | None = None


class RepeatThrottle(logging.Filter):
    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.seen: dict[tuple[str, str], _Seen] = {}
        self._lock = threading.Lock()  # faust's consumer thread logs too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, SUMMARY, False):
            return True  # only warnings and errors flood; info lines are state changes
        key = (record.name, record.getMessage())
        now = self.clock()
        with self._lock:
            seen = self.seen.get(key)
            if seen is not None and now - seen.logged_at < self.window:
                seen.dropped += 1
                seen.last = record
                return False
            if len(self.seen) > 10_000:  # a bound on what it remembers
                self.seen.clear()
            self.seen[key] = _Seen(now, record.created)
        if seen is not None and seen.dropped:  # its window closed before a flush said so
            record.msg, record.args = f"{record.getMessage()} {self._count(seen)}", ()
        return True

    def due(self) -> list[logging.LogRecord]:
        """The count lines of every window that has closed, once each."""
        now = self.clock()
        lines = []
        with self._lock:
            for key, seen in list(self.seen.items()):
                if now - seen.logged_at < self.window:
                    continue
                del self.seen[key]
                if seen.dropped and seen.last is not None:
                    line = logging.makeLogRecord(seen.last.__dict__)
                    line.msg, line.args = f"{seen.last.getMessage()} {self._count(seen)}", ()
                    line.created = time.time()
                    setattr(line, SUMMARY, True)
                    lines.append(line)
        return lines

    def _count(self, seen: _Seen) -> str:
        first = time.strftime("%H:%M:%S", time.localtime(seen.wall))
        return f"[repeated {seen.dropped} more times in the {self.window:g} s after {first}]"


def install(logger: logging.Logger, window: float = 10.0) -> None:
    """On every handler of `logger` (filters on handlers see records of child loggers),
    with one flusher thread per process writing the counts."""
    for handler in logger.handlers:
        if not any(isinstance(f, RepeatThrottle) for f in handler.filters):
            throttle = RepeatThrottle(window)
            handler.addFilter(throttle)
            _FLUSHER.add(handler, throttle)


class _Flusher:
    def __init__(self) -> None:
        self.throttles: list[tuple[logging.Handler, RepeatThrottle]] = []
        self.thread: threading.Thread | None = None

    def add(self, handler: logging.Handler, throttle: RepeatThrottle) -> None:
        self.throttles.append((handler, throttle))
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="log-throttle", daemon=True)
            self.thread.start()

    def run(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_SECONDS)  # a clock tick of its own, not a wait on others
            for handler, throttle in list(self.throttles):
                for line in throttle.due():
                    handler.handle(line)


_FLUSHER = _Flusher()
