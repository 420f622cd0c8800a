"""`python -m stepstream.streams.kafka_probe kafka SERVERS [--timeout S]`: infra.health's
readiness probe, asking Kafka with the TLS and SASL the environment's KAFKA_* settings
give (infra/local/services.sh probes its secured broker this way)."""

from __future__ import annotations

import sys

from stepstream.infra.health import kafka_answers, main
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.settings import Settings


async def secured_kafka_answers(servers: str) -> str:
    options = KafkaAccess.from_settings(Settings.from_env()).security_options()
    return await kafka_answers(servers, **options)


if __name__ == "__main__":
    sys.exit(main(probes={"kafka": secured_kafka_answers}))
