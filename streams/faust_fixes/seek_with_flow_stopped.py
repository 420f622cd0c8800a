"""Correction 10: stream partitions are sought back with the flow stopped.

What goes wrong: once a rebalance has recovered the tables, faust's
`Recovery.on_recovery_completed` resumes the stream partitions, seeks them to their
committed offsets, and only then calls `flow_control.resume()`, which clears every
stream's in-memory queue. The consumer's flow is already running at that point (faust
resumed it to read the changelogs), so while the seek's round trip to the consumer
thread completes, the drain loop can fetch the first records after the committed offset
and put them in those queues. The clear then throws them away, after the seek: nothing
fetches them again. The stream goes on with the next fetch, its events are processed and
acknowledged, and the commit stands for good at the first record thrown away. Seen from
outside (issue 23, after a scale-in): 512 start requests of one partition never started,
one fetch's worth, with the group's committed offset at the first of them for over ten
minutes, while later records of the same partition were processed.

The fix stops the flow before such a seek (the drain loop delivers nothing more, and
streams skip what is queued, unacknowledged: correction 6): what the clear then throws
away was fetched before the seek and is fetched again. faust resumes the flow right
after the seek, as before. A seek made while the flow is already stopped (the other
callers) is left as it is.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Recovery.on_recovery_completed, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/tables/recovery.py
- Consumer.perform_seek, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
- FlowControlEvent.resume (clears the queues), in mode-streaming's mode/utils/queues.py
Upstream: faust-streaming/faust#596 ("A race condition in recovery causes unrecoverable
gaps in acked offsets and consequently blocks committing", open).
Way out: retire it when faust clears the queues before it seeks.
Test: tests/regression/i23_recovery_clears_after_seek/test_recovery_seek.py.
"""

from __future__ import annotations

from faust.transport.consumer import Consumer

_faust_perform_seek = Consumer.perform_seek


async def _perform_seek(self: Consumer) -> None:
    if self.flow_active:
        self.stop_flow()
        self.app.flow_control.suspend()
    await _faust_perform_seek(self)


def apply() -> None:
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
