"""The chaos tests' load: executions started at a steady pace, a diamond of sleep steps
and the reference workflow (PostgreSQL side effects), and the wait for their outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import asyncpg

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import wait_until_ready
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.chaos.faults import Workers
from tests.chaos.verifier import Verdict, evidence, verify
from tests.integration.workers import read_topic, sleep_diamond
from tests.waiting import until_moment


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
        await until_moment(began + (n + 1) / scenario.start_rate)  # the load's pace
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


async def run_scenario(
    engine: Settings,
    workers: Workers,
    faults: Callable[[asyncio.Event], Awaitable[None]],
    describe_faults: Callable[[], str],
    scenario: Load,
    token: str,
    database_url: str,
    layout: str,
) -> tuple[Verdict, str]:
    """Start the load at its pace while `faults` runs, until the load is in; then wait
    for every outcome and verify. Prints the verdict line, and the evidence when anything
    had to be recovered; returns the verdict and its line."""
    await wait_until_ready(engine, list(workers.workers.values()), 120)
    loading = asyncio.Event()
    fault_loop = asyncio.create_task(faults(loading))
    async with WorkflowClient(engine, follow_outcomes=False) as client:
        maintenance = await maintenance_input(database_url)
        diamonds, requests = await start_at_pace(client, scenario, token, maintenance)
    loading.set()
    await fault_loop
    ids = diamonds | requests
    await wait_for_outcomes(engine, ids, scenario.deadline)
    verdict = await verify(engine, ids, requests, database_url)
    verdict.watchdog_resumes = workers.log_lines("watchdog: execution")
    verdict.stale_dropped = workers.log_lines("fetched before a rebalance")
    verdict.guard_heals = workers.log_lines("progress guard: ")
    line = f"[{layout}] " + verdict.line(describe_faults())
    print(line)
    if not verdict.ok or verdict.watchdog_resumes or verdict.guard_heals:
        stalled = workers.stalled_executions()
        print(await evidence(engine, (verdict.missing + stalled)[:5]))
        print(workers.stall_reports())
    return verdict, line
