"""The chaos tests' database: a schema of each module's own, seeded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from stepstream.demo.data import seed
from stepstream.infra.db import migrate


@pytest.fixture(scope="module")
def chaos_database_url(
    database_url: str, run_token: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A schema of its own, seeded, with technicians who can take every request."""
    schema = f"test_{run_token}_{request.module.__name__.rsplit('.', 1)[-1]}"

    async def create() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(f"CREATE SCHEMA {schema}")
            await connection.execute(f"SET search_path TO {schema}")
            await migrate(connection)
            await seed(connection)
            await connection.execute("UPDATE technicians SET capacity = 100000")
        finally:
            await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await connection.close()

    asyncio.run(create())
    yield f"{database_url}?search_path={schema}"
    asyncio.run(drop())
