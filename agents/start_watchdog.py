"""Start watchdog: a start request with no outcome past the margin is announced again.

The intake's progress is its commit. A WorkflowStartRequested past the engine group's
committed offset, older than WORKFLOW_WATCHDOG_MARGIN_MS, on a partition whose commit
has not moved for as long, whose execution this worker's `started` table does not
hold, was skipped or waits behind a stalled partition (the progress guard heals the
partition; this heals the start, whatever held it). Its record is published again as
it was: starts are idempotent by execution id, so the intake starts it once, rejects it
with its reason, or finds it started.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TableT

from stepstream.infra.metrics import METRICS
from stepstream.streams.engine import Engine
from stepstream.streams.events import now_ms
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.pending_starts import PendingStart, committed_offsets, starts_past
from stepstream.streams.progress import PartitionProgress, ProgressGuard

log = logging.getLogger(__name__)

CHECK_INTERVAL_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 30.0  # a look that hangs (the broker away) is cut off and said
# A start announced again is not announced again before this many margins: its first
# copy may still be on its way through a partition that is behind.
QUIET_MARGINS = 10


class StartWatchdog:
    def __init__(self, engine: Engine, started: TableT[bytes, Any]) -> None:
        self.engine = engine
        self.started = started
        self.margin_ms = engine.settings.watchdog_margin_ms
        self.quiet_until: dict[str, int] = {}  # execution id -> when it may be sent again
        # The progress guard's bookkeeping, with the margin for its bound: a backlog moves
        # the commit, a lost start holds it for good.
        self.progress = ProgressGuard(self.margin_ms / 1000)
        self._reader: AIOKafkaConsumer | None = None
        self.resumed = 0

    def stalled(self, pending: list[PendingStart], now: int) -> list[PendingStart]:
        """Those past the margin with no start recorded here and not announced lately."""
        self.quiet_until = {k: t for k, t in self.quiet_until.items() if t > now}
        return [
            start
            for start in pending
            if start.requested_at_ms <= now - self.margin_ms
            and self.started.get(start.execution_id.encode()) is None
            and start.execution_id not in self.quiet_until
        ]

    async def check(self) -> None:
        engine = self.engine
        topic = engine.names.workflow_start
        if not engine.ready:
            return
        partitions = {
            TopicPartition(tp.topic, tp.partition) for tp in engine.assigned if tp.topic == topic
        }
        admin, _ = await engine.guard.clients()
        reader = await self.reader()
        committed = await committed_offsets(admin, reader, engine.app.conf.id, partitions)
        ends = await reader.end_offsets(list(committed)) if committed else {}
        now = now_ms()
        # Only where the commit has stood still with starts waiting: behind a moving one (a
        # backlog) every start is reached in its turn, and announcing it again would only
        # add to the queue.
        progress = {tp: PartitionProgress(offset, ends[tp]) for tp, offset in committed.items()}
        stalls = self.progress.observe(now / 1000, progress)
        still = {cast(TopicPartition, s.partition): s.committed for s in stalls}
        pending = await starts_past(reader, still)
        stalled = self.stalled(pending, now)
        old = sum(start.requested_at_ms <= now - self.margin_ms for start in pending)
        if old:  # rare: only behind a stalled partition, or a start that was skipped
            log.info(
                "start watchdog: %d start(s) past a commit still for the margin, older than"
                " it, %d with no outcome",
                old,
                len(stalled),
            )
        for start in stalled:
            log.warning(
                "start watchdog: the start of %s (%s/%d/%d, requested %d s ago) has no"
                " outcome; announcing it again",
                start.execution_id,
                topic,
                start.partition,
                start.offset,
                (now - start.requested_at_ms) // 1000,
                extra={"execution_id": start.execution_id},
            )
            producer = await engine.producer()
            await producer.send(topic, start.key, start.value, start.partition, None, None)
            self.quiet_until[start.execution_id] = now + QUIET_MARGINS * self.margin_ms
            self.resumed += 1
            METRICS.start_resumes.inc()

    async def reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                **kafka_access(self.engine.settings).client_options(),
                enable_auto_commit=False,
            )
            await self._reader.start()
        return self._reader

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None


def install(engine: Engine, started: TableT[bytes, Any]) -> StartWatchdog:
    watchdog = StartWatchdog(engine, started)

    @engine.app.timer(interval=CHECK_INTERVAL_SECONDS)  # type: ignore[untyped-decorator]
    async def look_for_stalled_starts() -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await watchdog.check()
        except Exception as error:  # noqa: BLE001 - the broker away: the next look tries again
            log.warning("start watchdog: pending starts not read this time: %r", error)

    @engine.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_reader(sender: Any, *args: Any, **kwargs: Any) -> None:
        await watchdog.close()

    return watchdog
