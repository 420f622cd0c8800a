"""The start watchdog looks for lost starts only behind a commit that stands still: a
backlog the intake is working through is not a stall (announcing its starts again
doubled the intake's work at saturation)."""

from __future__ import annotations

from aiokafka import TopicPartition

from stepstream.streams.pending_starts import CommitStillness

A, B = TopicPartition("starts", 0), TopicPartition("starts", 1)


def test_a_commit_is_still_only_once_it_has_stood_for_the_margin() -> None:
    stillness = CommitStillness(margin_ms=30_000)
    assert stillness.still({A: 5}, now_ms=0) == {}  # first look: no history yet
    assert stillness.still({A: 5}, now_ms=29_999) == {}
    assert stillness.still({A: 5}, now_ms=30_000) == {A: 5}


def test_a_moving_commit_is_never_still_however_long_the_backlog() -> None:
    stillness = CommitStillness(margin_ms=30_000)
    for look in range(100):  # 500 s of looks, the commit a little further each time
        assert stillness.still({A: look * 10}, now_ms=look * 5_000) == {}


def test_a_commit_that_moves_starts_its_stillness_over() -> None:
    stillness = CommitStillness(margin_ms=10_000)
    stillness.still({A: 1, B: 1}, now_ms=0)
    assert stillness.still({A: 1, B: 2}, now_ms=10_000) == {A: 1}
    assert stillness.still({A: 1, B: 2}, now_ms=19_999) == {A: 1}
    assert stillness.still({A: 1, B: 2}, now_ms=20_000) == {A: 1, B: 2}


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    stillness = CommitStillness(margin_ms=10_000)
    stillness.still({A: 1, B: 1}, now_ms=0)
    stillness.still({A: 1}, now_ms=5_000)  # B went to another worker
    assert stillness.still({A: 1, B: 1}, now_ms=10_000) == {A: 1}  # B's history starts over
