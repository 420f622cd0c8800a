"""Steady state, faults, verify: executions started at a steady pace while workers are
killed with SIGKILL and restarted on their data directories (once while a third worker
joins the group), then a verifier that reads only the public topics and PostgreSQL.

CI runs the short scenario inside `make test`; `make chaos` runs the full one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.data import seed
from stepstream.infra.db import migrate
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import parse_definition
from tests.chaos.faults import FULL, LAYOUTS, SHORT, Faults, Scenario
from tests.chaos.verifier import evidence, verify
from tests.integration.workers import (
    engine_env,
    prepare,
    read_topic,
    sleep_diamond,
    wait_until_ready,
)

REFERENCE = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"

SLEEPY = sleep_diamond("chaos-diamond", 0.05)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return FULL if os.environ.get("STEPSTREAM_CHAOS") == "full" else SHORT


@pytest.fixture(scope="module")
def chaos_database_url(database_url: str, run_token: str) -> Iterator[str]:
    """A schema of its own, seeded, with technicians who can take every request."""
    schema = f"test_{run_token}_chaos"

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
    client: WorkflowClient, scenario: Scenario, token: str, maintenance: dict[str, object]
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


@pytest.mark.parametrize("layout", ["one", "split"])
async def test_no_execution_is_lost_or_stuck_while_workers_are_killed(
    layout: str,
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    chaos_database_url: str,
    redis_url: str,
    scenario: Scenario,
    tmp_path: Path,
) -> None:
    env = engine_env(settings, f"test-{run_token}-chaos-{layout}", DATABASE_URL=chaos_database_url)
    engine = Settings.from_env(env)
    await prepare(engine, SLEEPY, parse_definition(REFERENCE.read_text()))
    faults = Faults(scenario, env, tmp_path, LAYOUTS[layout])
    for name in LAYOUTS[layout]:
        faults.start(name)
    try:
        await wait_until_ready(engine, list(faults.workers.values()), 120)
        loading = asyncio.Event()
        fault_loop = asyncio.create_task(faults.run(until=loading))
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            maintenance = await maintenance_input(chaos_database_url)
            token = f"{run_token}-{layout}"  # the schema is shared by both layouts
            diamonds, requests = await start_at_pace(client, scenario, token, maintenance)
        loading.set()
        await fault_loop
        ids = diamonds | requests
        await wait_for_outcomes(engine, ids, scenario.deadline)
        verdict = await verify(engine, ids, requests, chaos_database_url)
        verdict.watchdog_resumes = faults.log_lines("watchdog: execution")
        verdict.stale_dropped = faults.log_lines("fetched before a rebalance")
        line = f"[{layout}] " + verdict.line(faults.kills, faults.rebalance_kills)
        print(line)
        if not verdict.ok or verdict.watchdog_resumes:
            stalled = faults.stalled_executions()
            print(await evidence(engine, (verdict.missing + stalled)[:5]))
            print(faults.stall_reports())
        assert verdict.ok, f"{line}\n{faults.log_tails()}"
        # The watchdog is a safety net; here it must have had nothing to catch.
        assert verdict.watchdog_resumes == 0, line
    finally:
        faults.stop_all()
