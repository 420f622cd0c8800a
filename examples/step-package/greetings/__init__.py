"""GREET: greet the workflow input's `name` and record it in PostgreSQL, once per attempt.

The database pool is a resource of the package: created by the first step that needs it
and closed when the worker shuts down, not once per step.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from stepstream import PermanentStepError, RetryPolicy, StepContext, StepPackage

steps = StepPackage("greetings")

TABLE = """
CREATE TABLE IF NOT EXISTS greetings (
    idempotency_key text PRIMARY KEY,
    greeting        text NOT NULL
)
"""


@steps.resource("database")
async def database() -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=2) as pool:
        await pool.execute(TABLE)
        yield pool


# For GREET steps that set neither: 10 s per attempt, 3 attempts (a database restart).
@steps.step("GREET", timeout_ms=10_000, retry=RetryPolicy(max_attempts=3, initial_backoff_ms=500))
async def greet(context: StepContext) -> dict[str, Any]:
    name = context.input.get("name")
    if not isinstance(name, str) or not name:
        raise PermanentStepError("GREET needs a non-empty string `name` in the input")
    greeting = f"{context.config.get('salutation', 'Hello')}, {name}!"
    pool = await steps.get("database")
    await pool.execute(  # keyed on the attempt: a redelivered step writes nothing twice
        "INSERT INTO greetings VALUES ($1, $2) ON CONFLICT DO NOTHING",
        context.idempotency_key,
        greeting,
    )
    return {"greeting": greeting}
