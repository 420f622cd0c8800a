"""The progress guard's judgement: which partitions count as stalled."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepstream.streams.progress import PartitionProgress, ProgressGuard

BOUND = 10.0


def test_a_commit_that_stands_still_with_records_waiting_is_a_stall_after_the_bound() -> None:
    guard = ProgressGuard(BOUND)
    waiting = {"p0": PartitionProgress(committed=5, end=9)}
    assert guard.observe(0.0, waiting) == []
    assert guard.observe(9.9, waiting) == []
    [stall] = guard.observe(10.0, waiting)
    assert (stall.partition, stall.committed, stall.end, stall.heals) == ("p0", 5, 9, 0)
    assert stall.stalled_for == 10.0


def test_a_moving_commit_is_progress() -> None:
    guard = ProgressGuard(BOUND)
    for second in range(100):
        moving = {"p0": PartitionProgress(committed=second, end=second + 50)}
        assert guard.observe(float(second), moving) == []


def test_nothing_waiting_and_work_in_flight_are_not_stalls() -> None:
    guard = ProgressGuard(BOUND)
    caught_up = {"p0": PartitionProgress(7, 7), "p1": PartitionProgress(3, 9, busy=True)}
    for second in range(0, 100, 5):
        assert guard.observe(float(second), caught_up) == []
    # The long step ends and the commit still stands: a bound from then on, not before.
    idle = {"p0": PartitionProgress(7, 7), "p1": PartitionProgress(3, 9)}
    assert guard.observe(100.0, idle) == []
    assert [s.partition for s in guard.observe(110.0, idle)] == ["p1"]


def test_a_heal_gives_another_bound_and_counts_until_the_offset_moves() -> None:
    guard = ProgressGuard(BOUND)
    stuck = {"p0": PartitionProgress(5, 9)}
    guard.observe(0.0, stuck)
    assert guard.observe(10.0, stuck)[0].heals == 0
    guard.healed("p0", 10.0)
    assert guard.observe(15.0, stuck) == []
    assert guard.observe(20.0, stuck)[0].heals == 1  # the seek did not help: escalate
    guard.healed("p0", 20.0)
    guard.observe(21.0, {"p0": PartitionProgress(9, 12)})  # healed: the commit moved
    assert guard.observe(31.0, {"p0": PartitionProgress(9, 12)})[0].heals == 0


def test_revoked_partitions_and_rebalances_start_the_clock_again() -> None:
    guard = ProgressGuard(BOUND)
    stuck = {"p0": PartitionProgress(5, 9)}
    guard.observe(0.0, stuck)
    guard.observe(5.0, {})  # p0 revoked
    assert guard.observe(10.0, stuck) == []  # back again: a fresh clock
    guard.reset()  # a rebalance
    assert guard.observe(19.0, stuck) == []
    assert len(guard.observe(29.0, stuck)) == 1


@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.integers(0, 3), st.integers(0, 6), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_a_stall_is_reported_only_after_the_bound_of_standing_still_with_work_waiting(
    steps: list[tuple[float, int, int, bool]],
) -> None:
    """Against a model that remembers every observation: a stall is reported exactly when
    the committed offset has not changed, and records have waited with nothing in flight,
    for at least the bound."""
    guard = ProgressGuard(BOUND)
    now = 0.0
    history: list[tuple[float, PartitionProgress]] = []
    for advance, committed, ahead, busy in steps:
        now += advance
        seen = PartitionProgress(committed, committed + ahead, busy)
        stalled = bool(guard.observe(now, {"p": seen}))
        history.append((now, seen))
        # The model: the latest time at which the partition was not "standing still with
        # records waiting": a change of offset, nothing waiting, or busy.
        since = None
        for at, earlier in reversed(history):
            if earlier.committed != committed:
                break
            since = at
            if earlier.busy or earlier.end <= earlier.committed:
                break
        assert since is not None
        assert stalled == (not busy and ahead > 0 and now - since >= BOUND)
