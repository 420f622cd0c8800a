"""faust's engine group (the intake, the coordinator) as the progress guard sees it.

The heal reaches into faust's consumer: the seek goes through faust's consumer thread,
and the per-partition read state that could hide the events read again (acknowledged
offsets, gaps) is cleared first. A stream partition left paused after a rebalance has
completed is resumed (faust pauses them during recovery; after it, none should be).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aiokafka import TopicPartition
from faust.transport.consumer import Consumer, ThreadDelegateConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from stepstream.streams.guard import request_rejoin

if TYPE_CHECKING:
    from stepstream.streams.engine import Engine


class EngineGroup:
    def __init__(self, engine: Engine, topics: set[str]) -> None:
        self.engine = engine
        self.group = engine.app.conf.id
        self.topics = topics  # the agents' inputs; tables read their changelogs uncommitted

    @property
    def consumer(self) -> Consumer:
        return cast(Consumer, self.engine.app.consumer)

    def watching(self) -> set[TopicPartition] | None:
        engine = self.engine
        if not engine.ready or not engine.app.flow_control.is_active():
            return None
        return {
            TopicPartition(tp.topic, tp.partition)
            for tp in engine.assigned
            if tp.topic in self.topics
        }

    def busy(self) -> set[TopicPartition]:
        return set()  # a batch takes milliseconds: a commit that stands still is a stall

    def doing(self, tp: TopicPartition) -> str:
        consumer = self.consumer
        acked: list[int] = consumer._acked.get(tp, [])  # noqa: SLF001 - faust internals
        paused = tp in consumer._paused_partitions  # noqa: SLF001
        head = f" (from {min(acked)})" if acked else ""
        return (
            f"faust: {len(acked)} offsets acknowledged past the commit{head}, paused {paused},"
            f" highwater {consumer.highwater(tp)}, events fenced so far {self.engine.stale_events}"
        )

    async def heal(self, tp: TopicPartition, committed: int) -> None:
        consumer = self.consumer
        if tp not in self.engine.assigned:
            return
        for state in (consumer._acked, consumer._acked_index, consumer._gap):  # noqa: SLF001
            state.pop(tp, None)
        consumer._committed_offset[tp] = committed  # noqa: SLF001 - the broker's, not faust's
        if tp in consumer._paused_partitions:  # noqa: SLF001
            consumer.resume_partitions({tp})
        await consumer.seek_wait({tp: committed})

    async def rejoin(self) -> None:
        consumer = self.consumer
        if not isinstance(consumer, ThreadDelegateConsumer):
            return
        thread = cast(AIOKafkaConsumerThread, consumer._thread)  # noqa: SLF001
        kafka: Any = thread._consumer  # noqa: SLF001
        if kafka is not None:  # aiokafka is not thread-safe: ask in faust's consumer thread
            thread.thread_loop.call_soon_threadsafe(request_rejoin, kafka)
