"""Sliding-window arithmetic: limits hold, boundary bursts cannot double, reset_at is exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stepstream.workflows.rate_limit import RateLimit, decide, window_start

LIMIT = RateLimit(points=10, window_ms=60_000)


def run(limit: RateLimit, attempts: list[int]) -> list[int]:
    """Feed start attempts (sorted times) through the limiter; return accepted times."""
    counts: dict[int, int] = {}
    accepted = []
    for now in attempts:
        start = window_start(now, limit.window_ms)
        previous = counts.get(start - limit.window_ms, 0)
        if decide(previous, counts.get(start, 0), limit, now).allowed:
            counts[start] = counts.get(start, 0) + 1
            accepted.append(now)
    return accepted


limits = st.builds(RateLimit, st.integers(1, 20), st.integers(10, 10_000))


@settings(max_examples=300, deadline=None)
@given(limits, st.lists(st.integers(0, 100_000), max_size=300))
def test_no_fixed_window_and_no_sliding_window_admits_more_than_allowed(
    limit: RateLimit, times: list[int]
) -> None:
    accepted = run(limit, sorted(times))
    windows: dict[int, int] = {}
    for t in accepted:
        windows[window_start(t, limit.window_ms)] = (
            windows.get(window_start(t, limit.window_ms), 0) + 1
        )
    assert all(count <= limit.points for count in windows.values())
    # Any interval of one window length holds at most points + the previous window's
    # weighted remainder, which is strictly less than twice the limit.
    for i, t in enumerate(accepted):
        inside = sum(1 for u in accepted[i:] if u < t + limit.window_ms)
        assert inside < 2 * limit.points or limit.points == 1


def test_a_burst_at_the_boundary_cannot_pass_twice() -> None:
    end_of_window = LIMIT.window_ms - 1
    burst = [end_of_window] * 10 + [LIMIT.window_ms] * 10  # 10 before, 10 just after
    assert len(run(LIMIT, burst)) == 10  # a fixed window would admit 20


def test_the_eleventh_start_in_a_window_is_refused_with_its_reset_time() -> None:
    decision = decide(0, 10, LIMIT, now_ms=5_000)
    assert not decision.allowed
    assert decision.reset_at_ms == 60_000 + 6_000  # 10 * (1 - g) <= 9 -> g = 0.1


@settings(max_examples=300, deadline=None)
@given(limits, st.integers(0, 40), st.integers(0, 40), st.integers(0, 10**9))
def test_reset_at_is_the_first_moment_one_more_start_fits(
    limit: RateLimit, previous: int, current: int, now: int
) -> None:
    previous, current = min(previous, limit.points), min(current, limit.points)
    decision = decide(previous, current, limit, now)
    if decision.allowed:
        return

    def allowed_at(t: int) -> bool:
        start = window_start(now, limit.window_ms)
        if window_start(t, limit.window_ms) == start:
            return decide(previous, current, limit, t).allowed
        if window_start(t, limit.window_ms) == start + limit.window_ms:
            return decide(current, 0, limit, t).allowed
        return True

    assert decision.reset_at_ms > now
    assert allowed_at(decision.reset_at_ms)
    assert not allowed_at(decision.reset_at_ms - 1)
