"""Real-service fixtures for the integration and chaos tests. Each isolates the test run:
a unique topic prefix, its own PostgreSQL schema, its own Redis key prefix. A missing
service fails the test loudly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from stepstream.infra.health import wait_until_answers
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import delete_topics_with_prefix
from tests.cluster import KafkaCluster, start_cluster

SERVICE_WAIT_SECONDS = 15.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"integration", "chaos"} & set(item.path.parts):
            item.add_marker(pytest.mark.integration)


def require(service: str, url: str) -> None:
    """Fail the test (never skip) when the service does not answer."""
    try:
        asyncio.run(wait_until_answers(service, url, SERVICE_WAIT_SECONDS))
    except TimeoutError as error:
        pytest.fail(
            f"{service} is required and not reachable: {error}. "
            "Start the services with `make services` (or `stepstream services up`).",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> str:
    require("kafka", settings.kafka_bootstrap_servers)
    return settings.kafka_bootstrap_servers


@pytest.fixture(scope="session")
def topic_prefix(run_token: str) -> str:
    return f"test-{run_token}"


@pytest.fixture(scope="session", autouse=True)
def delete_this_runs_topics(settings: Settings, run_token: str) -> Iterator[None]:
    """Every integration test names its topics `test-<run token>...`; they go at the end,
    so that a developer's broker does not slow down under the topics of earlier runs."""
    yield
    try:
        asyncio.run(delete_topics_with_prefix(kafka_access(settings), f"test-{run_token}"))
    except Exception as error:  # hygiene only: the tests have passed or failed by now
        print(f"could not delete this run's topics: {error!r}")


@pytest.fixture(scope="session")
def database_url(settings: Settings) -> str:
    require("postgres", settings.database_url)
    return settings.database_url


@pytest.fixture(scope="session")
def pg_schema(database_url: str, run_token: str) -> str:
    """A schema of this run's own, dropped at the end."""
    schema = f"test_{run_token}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    yield schema
    asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(scope="session")
def schema_database_url(database_url: str, pg_schema: str) -> str:
    """DATABASE_URL for this run's schema, migrated; what the workers under test get."""
    from stepstream.infra.db import migrate

    url = f"{database_url}?search_path={pg_schema}"

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await migrate(connection)
        finally:
            await connection.close()

    asyncio.run(run())
    return url


@pytest.fixture
async def pg(database_url: str, pg_schema: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": pg_schema})
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def redis_url(settings: Settings) -> str:
    require("redis", settings.redis_url)
    return settings.redis_url


@pytest.fixture
async def redis_client(redis_url: str, run_token: str) -> AsyncIterator[aioredis.Redis]:
    """A client; every key this run wrote under `test:<token>:` is deleted afterwards."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"test:{run_token}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A 3-node KRaft cluster of the run's own (tests/cluster.py), stopped at the end."""
    cluster = start_cluster(tmp_path_factory.mktemp("kafka-cluster"))
    try:
        yield cluster
    finally:
        cluster.down()
