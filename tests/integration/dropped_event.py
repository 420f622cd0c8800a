"""A fault, injected where the stalls were seen: loaded into a test's worker with
`worker --steps tests.integration.dropped_event`, it drops, for each `topic=key` of
`STEPSTREAM_TEST_DROP` (comma-separated), the first event of that topic with that key
inside the engine's drain path, as the generation fence drops a stale event:
unacknowledged and unprocessed, so faust never commits past it and nothing fetches it
again. Only the progress guard, or for a start the start watchdog, brings it back."""

from __future__ import annotations

import logging
import os
from typing import Any

from stepstream import StepPackage
from stepstream.streams.engine import Engine

steps = StepPackage("dropped-event")  # a step package in name: the worker loads it with --steps

log = logging.getLogger(__name__)
_fenced = Engine.fenced
_dropped: set[tuple[str, bytes]] = set()


def _fenced_with_fault(self: Engine, event: Any) -> bool:
    message = event.message
    wanted = dict(pair.split("=", 1) for pair in os.environ["STEPSTREAM_TEST_DROP"].split(","))
    topic = message.topic.rsplit(".", 1)[-1]
    if message.key is not None and wanted.get(topic, "").encode() == message.key:
        if (message.topic, message.key) not in _dropped:
            _dropped.add((message.topic, message.key))
            message.acked = True  # what the fence does: faust will not acknowledge it
            log.warning("fault: dropped %s/%s/%s", message.topic, message.partition, message.offset)
            return False
    return _fenced(self, event)


Engine.fenced = _fenced_with_fault  # type: ignore[method-assign]
