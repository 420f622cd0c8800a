"""Which partitions have stopped making progress, whatever the consumer thinks it is doing.

A partition stalls when it is assigned here and ready, has records past the group's
committed offset, holds no work in flight, and its committed offset has not moved for
a bound. Kafka's own view (committed and end offsets, read from the broker) is the
evidence: an event that faust dropped, a partition left paused, a loop that died all
look the same from there. Pure bookkeeping, no I/O: `streams.guard` feeds it offsets
and heals what it reports.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionProgress:
    committed: int  # the group's committed offset; the log start when it never committed
    end: int  # the partition's end offset: one past its last record
    busy: bool = False  # work of it in flight (a long step, a database outage): not stuck


@dataclass(frozen=True)
class Stall:
    partition: Hashable
    committed: int
    end: int
    stalled_for: float  # seconds without a commit while records waited
    heals: int  # heals already tried since the offset last moved: escalate past one


@dataclass
class _Clock:
    committed: int
    since: float
    heals: int = 0


class ProgressGuard:
    """Remembers, per partition, since when its committed offset has stood still while
    records waited past it."""

    def __init__(self, bound_seconds: float) -> None:
        self.bound = bound_seconds
        self._clocks: dict[Hashable, _Clock] = {}

    def observe(self, now: float, progress: Mapping[Hashable, PartitionProgress]) -> list[Stall]:
        """The partitions stalled at `now`. Partitions missing from `progress` are no longer
        watched (revoked): their clocks are dropped."""
        for gone in self._clocks.keys() - progress.keys():
            del self._clocks[gone]
        stalls = []
        for partition, seen in progress.items():
            clock = self._clocks.get(partition)
            if clock is None or clock.committed != seen.committed:
                self._clocks[partition] = _Clock(seen.committed, now)  # it moved: progress
                continue
            if seen.busy or seen.end <= clock.committed:
                clock.since = now  # working on it, or nothing waits: not a stall
                continue
            if now - clock.since >= self.bound:
                stalls.append(
                    Stall(partition, seen.committed, seen.end, now - clock.since, clock.heals)
                )
        return stalls

    def healed(self, partition: Hashable, now: float) -> None:
        """A heal was tried: give it another bound to show progress before the next one."""
        clock = self._clocks.get(partition)
        if clock is not None:
            clock.since = now
            clock.heals += 1

    def reset(self) -> None:
        """Not ready (a rebalance): every clock starts again once it is."""
        self._clocks.clear()
