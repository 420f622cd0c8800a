"""The chaos tests' load: executions started at a steady pace, a diamond of sleep steps
and the reference workflow (PostgreSQL side effects), and the wait for their outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Protocol

import asyncpg

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import read_topic, sleep_diamond


class Load(Protocol):
    @property
    def executions(self) -> int: ...

    @property
    def maintenance(self) -> int: ...

    @property
    def start_rate(self) -> float: ...


REFERENCE = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"

SLEEPY = sleep_diamond("chaos-diamond", 0.05)


async def maintenance_input(database_url: str) -> dict[str, object]:
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT a.property_id, a.id FROM assets a WHERE a.name = 'Kitchen sink'"
        )
        return {"property_id": row[0], "asset_id": row[1], "title": "Water under the sink"}
    finally:
        await connection.close()


async def start_at_pace(
    client: WorkflowClient, scenario: Load, token: str, maintenance: dict[str, object]
) -> tuple[set[str], set[str]]:
    """Start every execution, `start_rate` a second; the pace is the load, not a wait."""
    every = max(1, scenario.executions // scenario.maintenance) if scenario.maintenance else 0
    diamonds: set[str] = set()
    requests: set[str] = set()
    began = time.monotonic()
    for n in range(scenario.executions):
        if every and n % every == 0 and len(requests) < scenario.maintenance:
            requests.add(
                await client.start_workflow(
                    "maintenance-request", maintenance, "t", f"u{n}", f"{token}-m{n}"
                )
            )
        else:
            diamonds.add(
                await client.start_workflow("chaos-diamond", {}, "t", f"u{n}", f"{token}-d{n}")
            )
        ahead = began + (n + 1) / scenario.start_rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)  # the load: starts paced at start_rate
    await client.flush()
    return diamonds, requests


async def wait_for_outcomes(engine: Settings, ids: set[str], timeout: float) -> None:
    """Until every execution has an outcome, or the timeout: the verifier says what is
    missing either way."""
    names = TopicNames.for_prefix(engine.topic_prefix)
    with contextlib.suppress(TimeoutError):
        await read_topic(
            engine,
            names.workflow_completed,
            until=lambda events: {e.record["execution_id"] for e in events} >= ids,
            timeout=timeout,
        )
