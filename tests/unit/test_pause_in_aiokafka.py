"""faust correction 1: a partition faust pauses is paused in aiokafka too.

faust's `Consumer.pause_partitions` only stops draining a partition; aiokafka went on
fetching it, and its undrained records held back every fetch from that broker for the
prefetch backoff. Run with faust's aiokafka-driver consumer and a real (unconnected)
aiokafka consumer in faust's consumer-thread role.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from stepstream.streams.faust_fixes import pause_in_aiokafka

CHANGELOG = TP("stepstream-engine-executions-changelog", 3)  # faust's own tuple type
NOT_OURS = TP("stepstream-engine-executions-changelog", 4)


def assigned(*tps: TP) -> AIOKafkaConsumer:
    kafka = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started: no I/O
    kafka.assign([TopicPartition(tp.topic, tp.partition) for tp in tps])
    return kafka


def faust_consumer(kafka: AIOKafkaConsumer) -> Consumer:
    """faust's consumer, with just the state pause and resume use; aiokafka's consumer in
    the thread's place, its loop the running one."""
    consumer = Consumer.__new__(Consumer)
    consumer._paused_partitions = set()
    consumer._active_partitions = {CHANGELOG}
    consumer._thread = SimpleNamespace(_consumer=kafka, thread_loop=asyncio.get_running_loop())
    return consumer


async def settled() -> None:
    await asyncio.sleep(0)  # the call scheduled on the (here: same) consumer thread's loop


async def test_faust_alone_leaves_aiokafka_fetching_a_paused_partition() -> None:
    kafka = assigned(CHANGELOG)
    consumer = faust_consumer(kafka)
    FaustConsumer.pause_partitions(consumer, [CHANGELOG])
    await settled()
    assert consumer._paused_partitions == {CHANGELOG}
    assert kafka.paused() == set()  # aiokafka still fetches it
    await kafka.stop()


async def test_a_pause_and_a_resume_reach_aiokafka_for_its_assigned_partitions() -> None:
    kafka = assigned(CHANGELOG)
    consumer = faust_consumer(kafka)
    pause_in_aiokafka._pause(consumer, [CHANGELOG, NOT_OURS])
    await settled()
    assert consumer._paused_partitions == {CHANGELOG, NOT_OURS}
    assert kafka.paused() == {CHANGELOG}  # one not assigned to aiokafka is left alone
    pause_in_aiokafka._resume(consumer, [CHANGELOG])
    await settled()
    assert kafka.paused() == set()
    assert consumer._paused_partitions == {NOT_OURS}
    await kafka.stop()
