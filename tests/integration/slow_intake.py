"""A fault: an intake slower than the starts that reach it. Loaded into a test's worker
with `worker --steps tests.integration.slow_intake`, it holds the worker for
`STEPSTREAM_TEST_INTAKE_MS` on each start request inside the engine's drain path, so
a burst of starts becomes a backlog the intake works through for many seconds, its
commit moving all the while."""

from __future__ import annotations

import os
import time
from typing import Any

from stepstream import StepPackage
from stepstream.streams.engine import Engine

steps = StepPackage("slow-intake")  # a step package in name: the worker loads it with --steps

_fenced = Engine.fenced


def _fenced_slowly(self: Engine, event: Any) -> bool:
    if event.message.topic.endswith(".workflow-start"):
        time.sleep(int(os.environ["STEPSTREAM_TEST_INTAKE_MS"]) / 1000)  # the fault: work
    return _fenced(self, event)


Engine.fenced = _fenced_slowly  # type: ignore[method-assign]
