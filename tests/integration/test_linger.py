"""`streams.linger.apply` on aiokafka's own producer, against the broker: a batch made
after the linger was set lingers for the new time, and is delivered once it has (a
flush, as faust's before every commit, waits for that too)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stepstream.streams.linger import apply


async def test_a_batch_made_after_apply_lingers_for_the_new_time(
    kafka_bootstrap: str, run_token: str
) -> None:
    topic = f"test-{run_token}-linger"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=10)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first", partition=0)  # metadata, topic made
        assert apply(producer, 1_000) is True
        assert apply(producer, 1_000) is False  # already so
        delivery = await producer.send(topic, b"second", partition=0)
        (batch,) = producer._message_accumulator._batches[TopicPartition(topic, 0)]
        assert batch.remaining_linger() > 0.5  # seconds: a second's linger, not 10 ms
        assert not delivery.done()
        await producer.flush()
        assert (await delivery).offset == 1
    finally:
        await producer.stop()
