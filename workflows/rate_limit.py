"""Sliding-window rate limiting, as pure arithmetic over per-window counts.

The estimate weighs the previous fixed window by how much of it still overlaps the
sliding window, plus the whole current window. A burst at a window boundary therefore
cannot pass twice the limit, as it can with bare fixed windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OverLimitPolicy(StrEnum):
    REJECT = "reject"
    DEFER = "defer"


@dataclass(frozen=True, slots=True)
class RateLimit:
    points: int
    window_ms: int
    policy: OverLimitPolicy = OverLimitPolicy.REJECT


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    estimate: float  # starts counted in the sliding window before this one
    reset_at_ms: int  # when one more start fits (now, when allowed)


_EPSILON = 1e-9  # the estimate is a float; reset_at is computed to the millisecond


def window_start(now_ms: int, window_ms: int) -> int:
    return now_ms - now_ms % window_ms


def estimate(previous: int, current: int, now_ms: int, window_ms: int) -> float:
    elapsed = (now_ms - window_start(now_ms, window_ms)) / window_ms
    return previous * (1 - elapsed) + current


def decide(previous: int, current: int, limit: RateLimit, now_ms: int) -> Decision:
    """May one more start happen now, given the counts of the previous and current
    fixed windows? If not, the earliest time it may."""
    seen = estimate(previous, current, now_ms, limit.window_ms)
    if seen + 1 <= limit.points + _EPSILON:
        return Decision(True, seen, now_ms)
    return Decision(False, seen, reset_at(previous, current, limit, now_ms))


def reset_at(previous: int, current: int, limit: RateLimit, now_ms: int) -> int:
    """The first millisecond at which `estimate + 1 <= points` again, if nothing else
    arrives. Within this window only the previous window's weight can fall; after it,
    the current window becomes the previous one and falls in turn."""
    start, window, room = window_start(now_ms, limit.window_ms), limit.window_ms, limit.points - 1
    if current <= room and previous > 0:
        # previous * (1 - f) + current <= room, f = offset / window, in exact integers
        offset = -(-window * (previous - room + current) // previous)
        if offset < window:
            return max(now_ms, start + offset)
    if current <= room:
        return start + window
    # In the next window: current * (1 - g) <= room.
    return start + window + -(-window * (current - room) // current)
