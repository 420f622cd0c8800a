"""Plain aiokafka consumer groups for the stateless agents (executor, persister).

They keep no table, so they need none of faust's per-event machinery: on this machine a
faust agent pays ~140 us per consumed event where a `getmany` batch costs a few. Each
runs in the worker process, in its own consumer group, and commits its own offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from stepstream.infra.metrics import METRICS
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings

log = logging.getLogger(__name__)


def group_consumer(settings: Settings, role: str) -> AIOKafkaConsumer:
    """A consumer in the group `<prefix>-<role>`; the caller subscribes it."""
    return AIOKafkaConsumer(
        **kafka_access(settings).client_options(),
        group_id=f"{settings.topic_prefix}-{role}",
        client_id=f"{settings.topic_prefix}-{role}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Like the faust consumer: a dead worker's partitions move within ~10 s.
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        max_poll_records=500,
    )


async def commit(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
    """Commit what is done, for the partitions this consumer owns now. Kafka accepts a
    group member's commit for any partition, so a position computed before a rebalance
    could move another member's partition past events it has not finished. A commit
    refused during a rebalance is not an error: the events after the last accepted
    commit run again, and every consumer of ours is idempotent."""
    owned = consumer.assignment()
    positions = {tp: offset for tp, offset in positions.items() if tp in owned}
    if not positions:
        return
    try:
        await consumer.commit(positions)
    except (CommitFailedError, KafkaError) as error:
        log.warning("%s: commit of %d partitions refused: %r", consumer, len(positions), error)


class OnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls `revoked` before partitions move, so their progress is committed first."""

    def __init__(self, revoked) -> None:  # type: ignore[no-untyped-def]
        self._revoked = revoked

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class LagGauge:
    """A group's lag on this worker's partitions (`stepstream_consumer_lag{group}`): the
    records past each partition's position, measured every few seconds at most from what
    the consumer already knows. It awaits nothing and raises nothing: it runs inside the
    consumer's loop, where a wait or an error would stall the group's work."""

    def __init__(self, group: str, every_seconds: float = 5.0) -> None:
        self.group = group
        self.every = every_seconds
        self.next_at = 0.0

    def measure(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.every
        try:  # aiokafka's own view of its partitions (no public sync API has it)
            assignment = consumer._subscription.subscription.assignment  # noqa: SLF001
            lag = 0
            for tp in list(assignment.tps):
                state = assignment.state_value(tp)
                if state is not None and state.highwater is not None and state.has_valid_position:
                    lag += max(0, state.highwater - state.position)
        except AttributeError:  # no assignment right now (a rebalance)
            return
        METRICS.consumer_lag.labels(self.group).set(lag)


async def keep_running(
    name: str, start: Callable[[], Awaitable[None]], pause_seconds: float = 1.0
) -> None:
    """Run a group's loop, and start it again, fresh, if it stops on an error. The loops
    run as faust app tasks, and faust drops a task's exception without a word: a loop
    that died would leave its partitions assigned and unconsumed."""
    while True:
        try:
            await start()
            return
        except asyncio.CancelledError:
            raise
        except Exception:  # logged, then a fresh start
            log.exception("%s stopped on an error; starting it again", name)
            await asyncio.sleep(pause_seconds)
