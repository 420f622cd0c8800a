"""`python -m stepstream.streams.kafka_probe SERVERS [--timeout S]`: the readiness probe of
infra.health for Kafka, with the TLS and SASL the environment's KAFKA_* settings give
(infra/local/services.sh probes its secured broker this way)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from stepstream.infra.health import kafka_answers, wait_until_answers
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("servers")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    options = KafkaAccess.from_settings(Settings.from_env()).security_options()

    async def probe(servers: str) -> str:
        return await kafka_answers(servers, **options)

    try:
        said = asyncio.run(wait_until_answers("kafka", args.servers, args.timeout, probe))
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"kafka: {said}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
