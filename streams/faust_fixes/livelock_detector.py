"""Correction 8: the livelock detector leaves paused partitions alone.

Every few commit intervals faust checks each assigned partition for a recent fetch
request (`Consumer.verify_all_partitions_active`) and logs an ERROR for each that has
none. The changelog partitions a worker writes but does not read are paused on purpose
(and, since correction 1, in aiokafka too), so an idle worker logged "Aiokafka has not
sent fetch request for TP(...changelog...)" for each of them, over and over (2,817 lines
in 12 minutes). The fix checks only the partitions that are not paused.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Consumer.verify_all_partitions_active, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
Upstream: faust-streaming/faust#166, #503 and #629 ("Aiokafka has not sent fetch
request", open).
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/unit/test_livelock_detector.py.
"""

from __future__ import annotations

from time import monotonic

from faust.transport.consumer import Consumer


async def _verify_all_partitions_active(self: Consumer) -> None:
    now = monotonic()
    for tp in self.assignment() - self._paused_partitions:
        await self.sleep(0)
        if not self.should_stop:
            self.verify_event_path(now, tp)


def apply() -> None:
    Consumer.verify_all_partitions_active = _verify_all_partitions_active  # type: ignore[method-assign]
