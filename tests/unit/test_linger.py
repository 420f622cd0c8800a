"""The producer's linger follows the worker's load (streams.linger): the configured one
while the worker has CPU to spare, the longer one while it is short of it, with a gap
between the two thresholds so that it does not flap."""

from __future__ import annotations

from stepstream.streams.linger import BUSY_SHARE, IDLE_SHARE, LoadFollowingLinger


def test_an_idle_worker_keeps_the_short_linger() -> None:
    linger = LoadFollowingLinger(idle_ms=10, busy_ms=40)
    assert [linger.decide(share) for share in (0.0, 0.3, IDLE_SHARE, 0.85)] == [10, 10, 10, 10]


def test_a_busy_worker_lingers_longer_until_it_has_cpu_to_spare_again() -> None:
    linger = LoadFollowingLinger(idle_ms=10, busy_ms=40)
    assert linger.decide(BUSY_SHARE) == 40
    assert linger.decide(0.85) == 40  # between the thresholds: as it was
    assert linger.decide(1.9) == 40  # a process's threads may use more than one core
    assert linger.decide(IDLE_SHARE - 0.01) == 10
    assert linger.decide(0.85) == 10


def test_a_busy_linger_no_longer_than_the_idle_one_changes_nothing() -> None:
    linger = LoadFollowingLinger(idle_ms=10, busy_ms=5)
    assert linger.decide(1.0) == 10
