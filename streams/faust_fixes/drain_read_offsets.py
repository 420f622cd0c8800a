"""Correction 9: the drain loop never drops an event as already read.

faust's drain loop (`Consumer._drain_messages`) drops every event below the partition's
read offset, the offset of the last event it delivered, which a seek resets to the
committed offset. After a rebalance that keeps a partition (no table recovery), faust
resumes the flow before it seeks the stream partitions (`Recovery._resume_streams`):
events fetched before the seek are still being delivered while it runs, each one moving
the read offset past the committed one again, and the events then read again from the
committed offset are dropped below it. Nothing acknowledges them: the commit stops there
and they are never processed, with no error, while aiokafka's position looks current (so
faust's livelock detector sees nothing). Seen in the chaos test, two or three runs in
25: a partition's committed offset stuck for minutes below WorkflowStarted or
StepCompleted records that were never applied. The fix reads every read offset as
unknown, so every event fetched is delivered; one delivered twice is harmless (every
agent is idempotent, and correction 5 commits an offset acknowledged twice once). The
drain loop's "gaps" go with it; correction 5 ignores them anyway.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Consumer._drain_messages, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
- Recovery._resume_streams, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/tables/recovery.py
Upstream: faust-streaming/faust#216 and #217 (the same race on the path without tables,
fixed there by seeking first); robinhood/faust#559.
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/unit/test_drain_read_offsets.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer


class _NothingRead(dict[Any, int | None]):
    """faust's read offsets, still kept (seeks write them) but read as unknown."""

    def __getitem__(self, tp: Any) -> None:
        return None


_faust_drain_messages = Consumer._drain_messages  # noqa: SLF001 - faust internals


async def _drain_messages(self: Consumer, fetcher: Any) -> None:
    self._read_offset = _NothingRead()
    await _faust_drain_messages(self, fetcher)


def apply() -> None:
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]  # noqa: SLF001
