"""Watchdog: a lost event costs time, never the execution.

The coordinator tells it after each checkpoint write when the execution would count as
stalled (`stepstream.workflows.stalls`). Every few seconds it looks at the executions past that
point: it logs what each waits for and emits the execution's outstanding commands again
(`announce`, the same deterministic event ids as a redelivery), then waits another
timeout plus margin before it looks at that execution again.

It reads checkpoints but never writes them, so it needs no partition context. Its index
lives in memory: the coordinator rebuilds it from the running index when partitions
are recovered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stepstream.agents.checkpoints import Checkpoints
from stepstream.infra.metrics import METRICS
from stepstream.streams.engine import Engine
from stepstream.streams.events import now_ms
from stepstream.workflows import Command, ExecutionState, announce
from stepstream.workflows.stalls import stall_deadline, waiting_on

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 5.0
# Executions announced again per look, the longest stalled first. A worker that takes
# over partitions whose timers fell due while nobody owned them finds thousands past
# their deadline at once: announcing them all in one look (and logging a line for each)
# took the CPU the timer sweep needed to fire them. The rest wait for the next looks.
MAX_ANNOUNCED_PER_LOOK = 200

Load = Callable[[bytes], tuple[ExecutionState, dict[str, Any]] | None]
Emit = Callable[[ExecutionState, dict[str, Any], Command], Awaitable[None]]


class Watchdog:
    def __init__(self, margin_ms: int) -> None:
        self.margin_ms = margin_ms
        self.deadlines: dict[bytes, int] = {}
        self.resumed = 0

    def track(self, key: bytes, state: ExecutionState) -> None:
        deadline = stall_deadline(state, self.margin_ms)
        if deadline is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = deadline

    def due(self, now: int) -> list[bytes]:
        """The executions past their deadline, the longest stalled first."""
        due = [(deadline, key) for key, deadline in self.deadlines.items() if deadline <= now]
        return [key for _, key in sorted(due)]

    async def check(self, now: int, load: Load, emit: Emit) -> None:
        due = self.due(now)
        if len(due) > MAX_ANNOUNCED_PER_LOOK:
            log.warning(
                "watchdog: %d executions past their deadline; announcing the %d longest"
                " stalled now, the rest in the next looks",
                len(due),
                MAX_ANNOUNCED_PER_LOOK,
            )
        for key in due[:MAX_ANNOUNCED_PER_LOOK]:
            loaded = load(key)
            if loaded is None:
                self.deadlines.pop(key, None)
                continue
            state, origin = loaded
            waiting = waiting_on(state, self.margin_ms)
            if not waiting or waiting[0].deadline_ms > now:
                self.track(key, state)
                continue
            log.warning(
                "watchdog: execution %s made no progress; waiting on %s; announcing its"
                " outstanding steps again",
                state.execution_id,
                "; ".join(w.describe(now) for w in waiting),
                extra={"execution_id": state.execution_id, "workflow_id": state.definition.id},
            )
            self.resumed += 1
            METRICS.watchdog_resumes.inc()
            for command in announce(state):
                await emit(state, origin, command)
            longest = max(state.definition.timeout_ms(w.step_id) for w in waiting)
            self.deadlines[key] = now + longest + self.margin_ms


def install(engine: Engine, watchdog: Watchdog, checkpoints: Checkpoints, emit: Emit) -> None:
    @engine.app.timer(interval=CHECK_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]
    async def look_for_stalls() -> None:
        await watchdog.check(now_ms(), checkpoints.of, emit)
        METRICS.in_flight.set(len(watchdog.deadlines))  # the executions it watches

    @engine.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget(sender: Any, *args: Any, **kwargs: Any) -> None:
        watchdog.deadlines.clear()  # rebuilt from the table once partitions are recovered
