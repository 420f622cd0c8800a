"""A correction to aiokafka 0.14's client: when every broker it knows fails, it asks the
bootstrap servers again.

aiokafka bootstraps once. Afterwards `AIOKafkaClient._metadata_update` (aiokafka/client.py,
https://github.com/aio-libs/aiokafka/blob/v0.14.0/aiokafka/client.py#L284) asks only the
brokers named in the last metadata it received. On a cluster that lost those brokers,
a client logs "Unable to update metadata from [1, 3]" ten times a second, for good, while
a broker it does not know (restarted after it was fenced, and listed in
KAFKA_BOOTSTRAP_SERVERS) leads every partition. Seen on a 3-broker cluster with a
worker's brokers killed in turn. Upstream: https://github.com/aio-libs/aiokafka/issues/459
(open); Java's clients do what this does since KIP-899 (`metadata.recovery.strategy=
rebootstrap`, the default from Kafka 4.0).

The way out: an aiokafka release that re-bootstraps. Test:
tests/integration/test_rebootstrap.py runs aiokafka's own client against the broker.

The lower `metadata_max_age_ms` every client gets (streams.kafka_access) is the other half:
it makes a client that still reaches one broker learn of a returned one within a minute.
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

log = logging.getLogger(__name__)

_original_update = AIOKafkaClient._metadata_update


async def _metadata_update(
    self: AIOKafkaClient, cluster_metadata: ClusterMetadata, topics: Any
) -> bool:
    if await _original_update(self, cluster_metadata, topics):
        return True
    return await _rebootstrap(self, cluster_metadata, topics)


async def _rebootstrap(
    client: AIOKafkaClient, cluster_metadata: ClusterMetadata, topics: Any
) -> bool:
    """Ask each bootstrap server in turn, as `AIOKafkaClient.bootstrap` does."""
    request = MetadataRequest(list(topics) if topics else None)
    for host, port, _ in client.hosts:
        try:
            conn = await create_conn(
                host,
                port,
                client_id=client._client_id,
                request_timeout_ms=client._request_timeout_ms,
                ssl_context=client._ssl_context,
                security_protocol=client._security_protocol,
                max_idle_ms=client._connections_max_idle_ms,
                sasl_mechanism=client._sasl_mechanism,
                sasl_plain_username=client._sasl_plain_username,
                sasl_plain_password=client._sasl_plain_password,
                sasl_kerberos_service_name=client._sasl_kerberos_service_name,
                sasl_kerberos_domain_name=client._sasl_kerberos_domain_name,
                sasl_oauth_token_provider=client._sasl_oauth_token_provider,
            )
        except (TimeoutError, OSError, KafkaError):
            continue
        try:
            metadata = await conn.send(request)
        except (TimeoutError, KafkaError):
            continue
        finally:
            conn.close()
        if not metadata.brokers:
            continue
        cluster_metadata.update_metadata(metadata)
        log.warning("Kafka metadata: no known broker answered; %s:%s (bootstrap) did", host, port)
        return True
    return False


WRITTEN_FOR = "0.14."
_applied = False


def apply() -> None:
    """Once per process; only on the aiokafka it was written for (the engine's start
    refuses another one, streams.faust_fixes.check_versions)."""
    global _applied
    if not _applied and aiokafka.__version__.startswith(WRITTEN_FOR):
        AIOKafkaClient._metadata_update = _metadata_update
        _applied = True
