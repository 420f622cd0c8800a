"""Readiness probes: does each service really answer (Kafka metadata, a SQL query, PING)?

Used by infra/local/services.sh while starting services, and by the smoke job.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaClient


async def kafka_answers(bootstrap_servers: str, **client_options: Any) -> str:
    """`client_options`: TLS and SASL (streams.kafka_probe passes a secured broker's)."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=5000, **client_options
    )
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        brokers = metadata.brokers()
        if not brokers:
            raise ConnectionError("metadata lists no broker yet")
        return f"{len(brokers)} broker(s), controller {metadata.controller}"
    finally:
        await client.close()


async def postgres_answers(database_url: str) -> str:
    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        version = await connection.fetchval("SHOW server_version")
        return f"PostgreSQL {version}"
    finally:
        await connection.close()


async def redis_answers(redis_url: str) -> str:
    client = aioredis.from_url(redis_url, socket_connect_timeout=5)
    try:
        if not await client.ping():
            raise ConnectionError("PING was not answered with PONG")
        info = await client.info("server")
        return f"Redis {info['redis_version']}"
    finally:
        await client.aclose()


PROBES: dict[str, Callable[[str], Awaitable[str]]] = {
    "kafka": kafka_answers,
    "postgres": postgres_answers,
    "redis": redis_answers,
}


async def wait_until_answers(
    service: str, url: str, timeout: float, probe: Callable[[str], Awaitable[str]] | None = None
) -> str:
    """Probe until the service answers or the deadline passes; return its description."""
    probe = probe or PROBES[service]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            return await asyncio.wait_for(probe(url), timeout=max(1.0, min(10.0, timeout)))
        except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{service} at {url} did not answer within {timeout:g}s: {last_error!r}"
            )
        await asyncio.sleep(0.5)


def main(
    argv: list[str] | None = None,
    probes: Mapping[str, Callable[[str], Awaitable[str]]] = PROBES,
) -> int:
    """`python -m stepstream.infra.health SERVICE URL [--timeout S]`; `probes` replaces
    how a service is asked (streams.kafka_probe: a secured broker)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=sorted(probes))
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    # aiokafka logs every refused connection while a broker starts; the verdict is enough.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    probe = probes[args.service]
    try:
        description = asyncio.run(wait_until_answers(args.service, args.url, args.timeout, probe))
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{args.service}: {description}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
