"""aiokafka's own client, corrected (streams.aiokafka_fixes): when every broker it knows
fails, it asks the bootstrap servers again instead of failing for good."""

from __future__ import annotations

from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import BrokerMetadata

from stepstream.streams import aiokafka_fixes


async def test_a_client_whose_known_brokers_are_gone_finds_the_cluster_again(
    kafka_bootstrap: str,
) -> None:
    aiokafka_fixes.apply()
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5_000)
    await client.bootstrap()
    try:
        real = {broker.nodeId for broker in client.cluster.brokers()}
        # What a worker's metadata said after its brokers died: only nodes that no longer
        # answer (port 1 refuses), the broker in KAFKA_BOOTSTRAP_SERVERS not among them.
        client.cluster._brokers = {99: BrokerMetadata(99, "127.0.0.1", 1, None)}
        assert await client._metadata_update(client.cluster, [])
        assert {broker.nodeId for broker in client.cluster.brokers()} == real
    finally:
        await client.close()


async def test_without_the_correction_it_stays_lost(kafka_bootstrap: str) -> None:
    """The behaviour the correction exists for, on aiokafka's original method."""
    client = AIOKafkaClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=5_000)
    await client.bootstrap()
    try:
        client.cluster._brokers = {99: BrokerMetadata(99, "127.0.0.1", 1, None)}
        assert not await aiokafka_fixes._original_update(client, client.cluster, [])
    finally:
        await client.close()
