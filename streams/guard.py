"""The progress guard: no partition is left behind, whatever faust or aiokafka does next.

Every few seconds it reads, from the broker, the committed and end offsets of every
partition assigned to each consumer the worker runs (faust's engine group: intake,
coordinator; the executor's and persister's groups), and `streams.progress` judges them.
A stalled partition is logged (one WARNING naming the group, the partition, the offsets
and what the consumer is doing), counted in `stepstream_partition_stalls_total`, and
healed without a restart: its consumer first seeks back to the committed offset and
forgets what it had read of it; if the partition is still stalled a bound later, the
consumer leaves and rejoins its group (a rebalance, which seeks every partition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stepstream.infra.metrics import METRICS
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.progress import PartitionProgress, ProgressGuard, Stall

log = logging.getLogger(__name__)


class Watched(Protocol):
    """A consumer the guard watches: one group member of this worker."""

    group: str

    def watching(self) -> set[TopicPartition] | None:
        """The partitions to watch, or None while not ready (a rebalance, a recovery)."""

    def busy(self) -> set[TopicPartition]:
        """Partitions whose work is in flight: their commit may wait, legitimately."""

    def doing(self, tp: TopicPartition) -> str:
        """What the consumer is doing with `tp`, for the log line."""

    async def heal(self, tp: TopicPartition, committed: int) -> None:
        """Read `tp` again from `committed`, forgetting what was read of it."""

    async def rejoin(self) -> None:
        """Leave and rejoin the group: a rebalance."""


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """aiokafka rejoins when its coordinator is asked to (what a subscription change
    does); no public call asks without changing the subscription."""
    consumer._coordinator.request_rejoin()  # noqa: SLF001 - aiokafka internals


class GroupMember:
    """A plain aiokafka group member (executor, persister) as the guard sees it."""

    def __init__(
        self,
        group: str,
        consumer: AIOKafkaConsumer,
        busy: Callable[[], set[TopicPartition]],
        forget: Callable[[TopicPartition], None] = lambda tp: None,
    ) -> None:
        self.group = group
        self.consumer = consumer
        self._busy = busy
        self._forget = forget

    def watching(self) -> set[TopicPartition] | None:
        return set(self.consumer.assignment())

    def busy(self) -> set[TopicPartition]:
        return self._busy()

    def doing(self, tp: TopicPartition) -> str:
        try:  # aiokafka's own view of the partition, as LagGauge reads it
            assignment = self.consumer._subscription.subscription.assignment  # noqa: SLF001
            state = assignment.state_value(tp)
            return f"aiokafka: position {state.position}, paused {state.paused}"
        except AttributeError:
            return "aiokafka: no position"

    async def heal(self, tp: TopicPartition, committed: int) -> None:
        if tp in self.consumer.assignment():
            self._forget(tp)
            self.consumer.seek(tp, committed)

    async def rejoin(self) -> None:
        request_rejoin(self.consumer)


class PartitionGuard:
    def __init__(self, kafka: KafkaAccess, bound_seconds: float) -> None:
        self.kafka = kafka
        self.bound = bound_seconds
        self.interval = max(1.0, bound_seconds / 4)
        self.watched: list[Watched] = []
        self._progress: dict[int, ProgressGuard] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self.stalls = 0

    def watch(self, member: Watched) -> None:
        self.watched.append(member)
        self._progress[id(member)] = ProgressGuard(self.bound)

    def unwatch(self, member: Watched) -> None:
        if member in self.watched:
            self.watched.remove(member)
            self._progress.pop(id(member), None)

    async def run(self) -> None:
        """Check every `interval` until cancelled; an error of one check (the broker away)
        is logged and the next check runs as usual."""
        try:
            while True:
                await asyncio.sleep(self.interval)  # the guard's cadence
                try:
                    async with asyncio.timeout(max(10.0, self.interval)):
                        await self.check(time.monotonic())
                except (TimeoutError, KafkaError, OSError) as error:
                    log.warning("progress guard: offsets not read this time: %r", error)
        finally:
            await self.close()

    async def check(self, now: float) -> list[Stall]:
        found = []
        for member in list(self.watched):
            guard = self._progress.get(id(member))
            watching = member.watching()
            if guard is None:
                continue
            if watching is None:
                guard.reset()
                continue
            progress = await self._read(member, watching) if watching else {}
            for stall in guard.observe(now, progress):
                found.append(stall)
                await self._act(member, guard, stall, now)
        return found

    async def _read(
        self, member: Watched, partitions: set[TopicPartition]
    ) -> dict[Any, PartitionProgress]:
        admin, offsets = await self.clients()
        tps = sorted(partitions)
        committed = await admin.list_consumer_group_offsets(member.group, partitions=tps)
        ends = await offsets.end_offsets(tps)
        starts = await offsets.beginning_offsets(tps)
        busy = member.busy()
        progress: dict[Any, PartitionProgress] = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            progress[tp] = PartitionProgress(done, ends[tp], tp in busy)
        return progress

    async def _act(self, member: Watched, guard: ProgressGuard, stall: Stall, now: float) -> None:
        tp = stall.partition
        if not isinstance(tp, TopicPartition) or tp not in (member.watching() or set()):
            return  # moved away meanwhile
        self.stalls += 1
        how = "rejoin" if stall.heals % 2 == 1 else "seek"  # a seek first, then both in turn
        METRICS.partition_stalls.labels(member.group, how).inc()
        log.warning(
            "progress guard: %s %s/%d stalled: committed offset %d for %.0f s with records up"
            " to %d waiting (%d behind); %s; healing: %s",
            member.group,
            tp.topic,
            tp.partition,
            stall.committed,
            stall.stalled_for,
            stall.end,
            stall.end - stall.committed,
            member.doing(tp),
            "leave and rejoin the group"
            if how == "rejoin"
            else f"seek back to the committed offset (heal {stall.heals + 1})",
        )
        if how == "rejoin":
            await member.rejoin()
        else:
            await member.heal(tp, stall.committed)
        guard.healed(tp, now)

    async def clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        """The worker's admin client and an offsets reader outside any group, made on first
        use (the start watchdog asks the same admin client)."""
        if self._admin is None or self._offsets is None:
            admin = AIOKafkaAdminClient(**self.kafka.client_options())
            offsets = AIOKafkaConsumer(**self.kafka.client_options(), enable_auto_commit=False)
            await admin.start()
            await offsets.start()
            self._admin, self._offsets = admin, offsets
        return self._admin, self._offsets

    async def close(self) -> None:
        admin, offsets, self._admin, self._offsets = self._admin, self._offsets, None, None
        if admin is not None:
            await admin.close()
        if offsets is not None:
            await offsets.stop()
