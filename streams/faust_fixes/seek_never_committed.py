"""Correction 2: partitions nobody committed are read again from their beginning.

What goes wrong: while a rebalance recovers tables, faust drops the events it fetches
(flow control is off) and, once recovery is done, seeks every partition back to its
committed offset to fetch them again. aiokafka's `seek_to_committed` does not move a
partition that has no committed offset yet (it only seeks when the offset is > 0), so
on a partition nobody has committed, the dropped events are never fetched again. faust
then commits past them: its gap check (`Consumer._new_offset`) is skipped when the
committed offset is None. Seen here: a second worker joining while the first ran load
on fresh topics left 10-25% of the executions stuck at their WorkflowStarted (no
checkpoint, no StepReady), with the group's committed offsets past those events.

The fix: after faust's seek, partitions without a committed offset are sought to their
beginning (what `auto_offset_reset="earliest"` means for a new group), so the dropped
events are fetched again. Events processed twice are harmless: every agent is
idempotent.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- AIOKafkaConsumerThread.seek_to_committed, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/drivers/aiokafka.py
- Consumer._new_offset, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
Upstream: none found (aiokafka's `seek_to_committed` skips offsets that are not > 0 by
design).
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/integration/test_scale_out.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stepstream.streams.faust_fixes.commit_offsets import first_offsets


async def _seek_to_committed_or_beginning(
    consumer: Any,
) -> tuple[Mapping[Any, int], dict[Any, int]]:
    """The committed offsets, and the first offset of each partition nobody committed
    (where it was sought to)."""
    committed: Mapping[Any, int] = await consumer.seek_to_committed()
    never_committed = [tp for tp, offset in committed.items() if not offset]
    if never_committed:
        await consumer.seek_to_beginning(*never_committed)
    return committed, {tp: await consumer.position(tp) for tp in never_committed}


async def _seek_to_committed(self: AIOKafkaConsumerThread) -> Mapping[Any, int]:
    """Replaces `AIOKafkaConsumerThread.seek_to_committed` (runs in faust's consumer
    thread, like the original). faust reads a committed offset of 0 as none at all, so
    the first offsets of the partitions read from their beginning are kept for the
    commit's head check (correction 5): their first record must be processed before any
    commit passes it."""
    committed: Mapping[Any, int]
    first: dict[Any, int]
    committed, first = await self.call_thread(
        _seek_to_committed_or_beginning, self._ensure_consumer()
    )
    first_offsets(self.consumer).update(first)
    return committed


def apply() -> None:
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
