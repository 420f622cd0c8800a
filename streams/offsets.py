"""Which consumed offsets may be committed when messages finish out of order.

Kafka commits a position per partition: everything before it counts as done. An
executor runs many messages of one partition at once and they finish in any order, so
the position it may commit is the lowest offset still running (or one past the last
offset it took, when none runs). Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class OffsetTracker:
    def __init__(self) -> None:
        # Per partition, the offsets taken and not yet committable, oldest first, each
        # with whether it has finished. Offsets of one partition arrive in order.
        self._open: dict[Hashable, dict[int, bool]] = {}
        self._positions: dict[Hashable, int] = {}
        self._advanced: set[Hashable] = set()

    def started(self, partition: Hashable, offset: int) -> None:
        self._open.setdefault(partition, {})[offset] = False

    def finished(self, partition: Hashable, offset: int) -> None:
        running = self._open.get(partition)
        if running is None or offset not in running:
            return  # the partition was revoked meanwhile: its position is not ours
        running[offset] = True
        while running:
            oldest = next(iter(running))
            if not running[oldest]:
                break
            del running[oldest]
            self._positions[partition] = oldest + 1
            self._advanced.add(partition)

    def running(self) -> set[Hashable]:
        """The partitions with offsets taken and not yet committable."""
        return {partition for partition, running in self._open.items() if running}

    def in_flight(self) -> int:
        return sum(len(running) for running in self._open.values())

    def take_positions(self) -> dict[Hashable, int]:
        """The positions that advanced since the last call: what to commit now."""
        positions = {partition: self._positions[partition] for partition in self._advanced}
        self._advanced.clear()
        return positions

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Partitions this consumer no longer owns: another member commits them now."""
        for partition in partitions:
            self._open.pop(partition, None)
            self._positions.pop(partition, None)
            self._advanced.discard(partition)
