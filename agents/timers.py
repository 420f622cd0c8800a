"""The timer sweep: wait steps' timers fire from the due-time index, never from memory
alone.

Every TIMER_SWEEP_SECONDS, in each executions partition this worker owns, the sweep
reads the timer index (`stepstream.workflows.timers`) from its first key up to a little
past now, and arms each timer it finds as a due event at its due time: a StepRetryDue
on the execution's partition, which the coordinator applies as a Tick, completing the
step once the clock has passed its due time (never early). The index came with the
partition's changelog, so a worker that takes a partition over re-arms nothing and
reads only what falls due; a timer armed twice (after a rebalance, or resent because
its Tick has not been applied yet) fires a Tick the core ignores (fires once).
"""

from __future__ import annotations

import json
import time
from typing import Any

from stepstream.agents.checkpoints import Checkpoints
from stepstream.infra.metrics import METRICS
from stepstream.streams.engine import Engine
from stepstream.streams.events import envelope, now_ms
from stepstream.streams.store_scan import keys_in_range
from stepstream.workflows.timers import TIMER_PREFIX, split_timer_key, timers_until

TIMER_SWEEP_SECONDS = 0.5
LOOKAHEAD_MS = 1_500  # armed this early, fired at their due time by the due events
MOST_PER_SWEEP = 5_000  # per partition: a bound on one look, however much is due
RESEND_AFTER_SECONDS = 30.0  # a timer still in the index by then is armed again
COUNT_EVERY_SWEEPS = 20  # the pending gauge is a full count of the index: not every sweep


class TimerSweep:
    def __init__(self, engine: Engine, checkpoints: Checkpoints) -> None:
        self.engine = engine
        self.checkpoints = checkpoints
        self.armed: dict[bytes, float] = {}  # timer key -> when this worker armed it
        self.sweeps = 0

    def forget(self) -> None:
        """Partitions were revoked: look at what comes back afresh."""
        self.armed.clear()

    def due(self, partition: int, until_ms: int) -> list[tuple[int, str, dict[str, Any]]]:
        """(due ms, execution id, StepRetryDue record) of the partition's timers due by
        `until_ms`, not armed lately."""
        start, stop = TIMER_PREFIX.encode(), timers_until(until_ms).encode()
        clock = time.monotonic()
        found = []
        entries = keys_in_range(
            self.checkpoints.table,
            partition,
            start,
            stop,
            MOST_PER_SWEEP,
            self.checkpoints.partition_of,
        )
        for key, value in entries:
            parsed = split_timer_key(key.decode(errors="surrogateescape"))
            if (
                parsed is None
                or clock - self.armed.get(key, -RESEND_AFTER_SECONDS) < RESEND_AFTER_SECONDS
            ):
                continue
            due_ms, step_id, execution_id = parsed
            origin = json.loads(value)  # with the step's attempt
            attempt = origin["attempt"]
            record = envelope(
                "timer-due", origin, step_id, attempt, step_id=step_id, attempt=attempt
            )
            record["timestamp"] = due_ms
            found.append((due_ms, execution_id, record))
            self.armed[key] = clock
        return found

    def sweep(self) -> None:
        engine = self.engine
        if not engine.ready:
            return
        clock = time.monotonic()
        self.armed = {k: t for k, t in self.armed.items() if clock - t < RESEND_AFTER_SECONDS}
        topic = engine.names.executions
        partitions = sorted(tp.partition for tp in engine.assigned if tp.topic == topic)
        until = now_ms() + LOOKAHEAD_MS
        for partition in partitions:
            for due_ms, execution_id, record in self.due(partition, until):
                engine.due.arm(due_ms, topic, execution_id, "StepRetryDue", record)
        self.sweeps += 1
        if self.sweeps % COUNT_EVERY_SWEEPS == 1:
            METRICS.timers_pending.set(self.pending(partitions))

    def pending(self, partitions: list[int]) -> int:
        start = TIMER_PREFIX.encode()
        stop = start[:-1] + bytes([start[-1] + 1])
        table, partition_of = self.checkpoints.table, self.checkpoints.partition_of
        return sum(
            len(keys_in_range(table, p, start, stop, 2**31, partition_of)) for p in partitions
        )
