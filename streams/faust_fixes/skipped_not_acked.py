"""Correction 6: an event faust skips is not acknowledged.

While a rebalance suspends the flow, and for events fetched in an earlier consumer
generation, faust's stream iterator skips the event unprocessed and acknowledges it all
the same ("otherwise the lag would increase"). Its offset then counts as done: a commit
can pass it before the partition, read again from its committed offset after the
rebalance, has processed it, and a worker that dies in between has lost it (delivery
rules 1 and 4). The fix records no acknowledgement while the flow is suspended or for a
message of an earlier generation; such an offset is read again and acknowledged when it
is processed.

faust code (faust-streaming 0.15.3, aiokafka 0.14):
- Stream._c_aiter (skips events while the flow is suspended), in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/streams.py
- Consumer.ack, in
  https://github.com/faust-streaming/faust/blob/v0.15.3/faust/transport/consumer.py
Upstream: none found.
Way out: retire it when faust's own code does the same (check on every upgrade).
Test: tests/unit/test_commit_offsets.py.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer

_consumer_ack = Consumer.ack


def _ack(self: Consumer, message: Any) -> bool:
    app = self.app
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        return False  # skipped unprocessed, or from before a rebalance: read again later
    return bool(_consumer_ack(self, message))


def apply() -> None:
    Consumer.ack = _ack  # type: ignore[method-assign]
