"""faust correction 5: the offset faust commits never skips an offset no event has
acknowledged yet."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams import faust_fixes

PARTITION = TP("stepstream.step-completed", 0)


def bookkeeping(committed: int | None, acked: list[int]) -> SimpleNamespace:
    """What faust's consumer keeps per partition for its commits."""
    return SimpleNamespace(
        _acked=defaultdict(list, {PARTITION: list(acked)}),
        _acked_index=defaultdict(set, {PARTITION: set(acked)}),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, {PARTITION: committed}),
    )


def test_one_unacknowledged_offset_at_the_head_holds_the_commit_back() -> None:
    # Committed 100 means 100 is the next to process; 101 and 102 were acknowledged
    # first (around a rebalance). faust itself would commit 103 and lose 100.
    assert Consumer._new_offset(bookkeeping(100, [101, 102]), PARTITION) == 103
    assert faust_fixes._new_offset(bookkeeping(100, [101, 102]), PARTITION) is None
    # Committed 0 (a partition's first records) is checked too.
    assert faust_fixes._new_offset(bookkeeping(0, [1, 2]), PARTITION) is None


def test_a_run_from_the_committed_offset_is_committed_up_to_its_first_gap() -> None:
    consumer = bookkeeping(100, [100, 101, 102, 104])
    assert faust_fixes._new_offset(consumer, PARTITION) == 103
    assert consumer._acked[PARTITION] == [104]
    assert faust_fixes._new_offset(bookkeeping(None, [7, 8]), PARTITION) == 9
