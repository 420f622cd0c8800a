"""Correction 5: the offset to commit never skips an unacknowledged offset at the head.

faust commits the end of the first run of acknowledged offsets, after checking that the
run starts at the committed position; the check (`Consumer._new_offset`) let a gap of
exactly one offset pass (`min(acked) - committed > 1`) and was skipped when the
committed offset was 0. Offsets can be acknowledged out of order around a rebalance
(faust acknowledges the events it skips while the flow is suspended, and the partition
is then read again from its committed offset); committing past the one unread offset
loses it if the worker then dies. Found by reading faust while chasing the one chaos run
in which the watchdog had to resume executions (their step completions were never
applied); whether it caused that run is not proven.

A partition nobody has committed (faust reads a committed 0 as none) has its head at its
first offset, which correction 2 records where it seeks such a partition to its
beginning: faust committed past a first event dropped there. Found by this project's
start-watchdog test, whose dropped start was committed past whenever a later start
landed on the same fresh partition.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Consumer._new_offset, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
Upstream: faust-streaming/faust#312 and its fix #313 (the head-gap check corrected
here); robinhood/faust#625 (duplicates in the acknowledged list).
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/unit/test_commit_offsets.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.utils.functional import consecutive_numbers


def first_offsets(consumer: object) -> dict[Any, int]:
    """The first offset of each partition this consumer read from its beginning, nobody
    having committed it (kept by correction 2, on the consumer)."""
    found: dict[Any, int] | None = consumer.__dict__.get("_stepstream_first_offsets")
    if found is None:
        found = consumer.__dict__["_stepstream_first_offsets"] = {}
    return found


def _new_offset(self: Consumer, tp: Any) -> int | None:
    """`Consumer._new_offset` (faust 0.15.3) with its head-gap check corrected: the
    offset to commit, the end of the first run of acknowledged offsets, only if that run
    starts at the committed position. faust's check let one unacknowledged offset at the
    head pass (`min(acked) - committed > 1`) and skipped the check when the committed
    offset was 0. Stricter than faust: an offset missing from the log (compaction) would
    hold the commit back; faust commits no compacted topic of ours (the agents consume
    delete-retention topics; tables read their changelogs uncommitted).
    """
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    # faust also counts the "gaps" its drain loop records (a jump between the offsets it
    # reads, meant for compacted topics and transaction markers) as acknowledged. Our
    # agents read delete-retention topics without transactions, where the log has every
    # offset; a jump there means events were skipped around a rebalance, and counting it
    # committed them unprocessed (seen in the chaos test: WorkflowStarted records
    # committed past with no checkpoint and no StepReady). Gaps are ignored.
    self._gap[tp].clear()
    committed = self._committed_offset[tp]
    if committed is None:  # never committed (or at 0, which faust reads as None): the
        # head is the partition's first offset. Without it, an event dropped at the very
        # start of a partition was committed past (seen: a start request lost for good).
        committed = first_offsets(self).get(tp)
    # An offset acknowledged in two consumer generations (read again after a rebalance)
    # can be in the list twice, and offsets already committed can linger: either one
    # splits every run into runs of one, and the commit then crawls one offset at a
    # time (seen in the chaos test: one offset per second, 270 waiting).
    acked[:] = sorted({o for o in acked if committed is None or o >= committed})
    if not acked:
        return None
    if committed is not None and acked[0] > committed:
        return None  # the next offset to commit has not been acknowledged yet
    batch = next(consecutive_numbers(acked))
    acked[: len(batch)] = []
    self._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


def apply() -> None:
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]  # noqa: SLF001
