"""The executor commits a partition's position only past offsets that have finished."""

from hypothesis import given
from hypothesis import strategies as st

from stepstream.streams.offsets import OffsetTracker


@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.randoms())
def test_position_never_passes_a_running_offset(gaps: list[int], random) -> None:
    offsets, offset = [], 100
    for gap in gaps:  # offsets of one partition increase, with gaps (compacted, filtered)
        offset += gap + 1
        offsets.append(offset)
    tracker = OffsetTracker()
    for o in offsets:
        tracker.started("p0", o)
    finish_order = offsets[:]
    random.shuffle(finish_order)
    done: set[int] = set()
    committed = None
    for o in finish_order:
        tracker.finished("p0", o)
        done.add(o)
        committed = tracker.take_positions().get("p0", committed)
        if committed is not None:
            # everything before the position finished; the offset at it did not
            assert all(x in done for x in offsets if x < committed)
            assert committed - 1 in done
    assert committed == offsets[-1] + 1
    assert tracker.in_flight() == 0


def test_positions_are_reported_once_and_per_partition() -> None:
    tracker = OffsetTracker()
    for o in (0, 1, 2):
        tracker.started("a", o)
    tracker.started("b", 7)
    tracker.finished("a", 1)
    assert tracker.take_positions() == {}  # offset 0 still runs
    tracker.finished("a", 0)
    tracker.finished("b", 7)
    assert tracker.take_positions() == {"a": 2, "b": 8}
    assert tracker.take_positions() == {}
    assert tracker.in_flight() == 1


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started("a", 5)
    tracker.forget(["a"])
    tracker.finished("a", 5)  # the run ends after the revocation
    assert tracker.take_positions() == {}
    assert tracker.in_flight() == 0
