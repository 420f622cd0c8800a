"""faust correction 5: the offset faust commits never skips an offset no event has
acknowledged yet."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from stepstream.streams.faust_fixes import commit_offsets, skipped_not_acked

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
    assert commit_offsets._new_offset(bookkeeping(100, [101, 102]), PARTITION) is None
    # Committed 0 (a partition's first records) is checked too.
    assert commit_offsets._new_offset(bookkeeping(0, [1, 2]), PARTITION) is None


def test_a_partition_nobody_committed_commits_nothing_past_its_first_offset() -> None:
    """faust reads a committed 0 as None; correction 2 keeps where it read the partition
    from, and the head check holds there too."""
    dropped_head = bookkeeping(None, [1, 2])
    commit_offsets.first_offsets(dropped_head)[PARTITION] = 0
    assert Consumer._new_offset(bookkeeping(None, [1, 2]), PARTITION) == 3  # faust: lost
    assert commit_offsets._new_offset(dropped_head, PARTITION) is None
    whole = bookkeeping(None, [0, 1, 2])
    commit_offsets.first_offsets(whole)[PARTITION] = 0
    assert commit_offsets._new_offset(whole, PARTITION) == 3


def test_a_run_from_the_committed_offset_is_committed_up_to_its_first_gap() -> None:
    consumer = bookkeeping(100, [100, 101, 102, 104])
    assert commit_offsets._new_offset(consumer, PARTITION) == 103
    assert consumer._acked[PARTITION] == [104]
    assert commit_offsets._new_offset(bookkeeping(None, [7, 8]), PARTITION) == 9


class Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


def consumer_of(generation: int, flowing: bool) -> SimpleNamespace:
    consumer = bookkeeping(100, [])
    consumer.app = SimpleNamespace(
        flow_control=Flow(flowing),
        consumer_generation_id=generation,
        topics=SimpleNamespace(acks_enabled_for=lambda topic: True),
    )
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    return consumer


class Message:
    """What faust's consumer reads of a message when it is acknowledged."""

    def __init__(self, offset: int, generation: int) -> None:
        self.acked = False
        self.tp, self.topic = PARTITION, PARTITION.topic
        self.offset, self.generation_id = offset, generation


def message(offset: int, generation: int) -> Message:
    return Message(offset, generation)


def test_events_skipped_during_a_rebalance_or_from_an_old_generation_are_not_acknowledged() -> None:
    suspended = consumer_of(generation=5, flowing=False)
    assert not skipped_not_acked._ack(suspended, message(100, generation=5))
    # faust itself would count it as done, and could commit past it unprocessed.
    assert Consumer.ack(consumer_of(generation=5, flowing=False), message(100, generation=5))

    flowing = consumer_of(generation=6, flowing=True)
    assert not skipped_not_acked._ack(flowing, message(100, generation=5))
    assert skipped_not_acked._ack(flowing, message(100, generation=6))
    assert flowing._acked[PARTITION] == [100]


def test_offsets_acknowledged_twice_or_already_committed_do_not_slow_the_commit() -> None:
    # 100 and 101 were acknowledged in two generations (read again after a rebalance),
    # 98 and 99 are already committed: the whole run 100-104 is committed at once.
    consumer = bookkeeping(100, [98, 99, 100, 100, 101, 101, 102, 103, 104])
    assert commit_offsets._new_offset(consumer, PARTITION) == 105
    assert consumer._acked[PARTITION] == []


def test_a_jump_faust_recorded_as_a_gap_is_not_taken_for_acknowledged_offsets() -> None:
    # The drain loop saw 103 after 100 and recorded 101-102 as a gap; on our topics the
    # log has them, unprocessed: the commit stops at 101 (faust itself would say 104).
    assert Consumer._new_offset(bookkeeping_with_gap(), PARTITION) == 104
    consumer = bookkeeping_with_gap()
    assert commit_offsets._new_offset(consumer, PARTITION) == 101
    assert commit_offsets._new_offset(consumer, PARTITION) is None  # 101 not acknowledged


def bookkeeping_with_gap() -> SimpleNamespace:
    consumer = bookkeeping(100, [100, 103])
    consumer._gap[PARTITION].addi(101, 103)
    return consumer
