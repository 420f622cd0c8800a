"""Steady state, scale out and in, verify: executions started at a steady pace while
workers join (empty or far-behind data directories) and leave cleanly, in a loop, in
both layouts; then the verifier reads the public topics and PostgreSQL.

CI runs the short loop inside `make test`; `make chaos` runs the long one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.workflows import parse_definition
from tests.chaos.faults import LAYOUTS
from tests.chaos.load import REFERENCE, SLEEPY, maintenance_input, start_at_pace, wait_for_outcomes
from tests.chaos.scaling import SCALE_FULL, SCALE_SHORT, Scaling
from tests.chaos.verifier import evidence, verify
from tests.integration.workers import engine_env, prepare, wait_until_ready


@pytest.mark.timeout(900)  # the full loop: 140 s of load, then up to 300 s to finish
@pytest.mark.parametrize("layout", ["one", "split"])
async def test_no_execution_is_lost_or_stuck_while_workers_join_and_leave(
    layout: str,
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    chaos_database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    scenario = SCALE_FULL if os.environ.get("STEPSTREAM_CHAOS") == "full" else SCALE_SHORT
    env = engine_env(settings, f"test-{run_token}-scale-{layout}", DATABASE_URL=chaos_database_url)
    engine = Settings.from_env(env)
    await prepare(engine, SLEEPY, parse_definition(REFERENCE.read_text()))
    base = {name: roles for name, roles in LAYOUTS[layout].items() if "w1" in name}
    scaling = Scaling(env, tmp_path, base, layout=layout, scenario=scenario)
    for name in base:
        scaling.start(name)
    try:
        await wait_until_ready(engine, list(scaling.workers.values()), 120)
        loading = asyncio.Event()
        loop = asyncio.create_task(scaling.run(until=loading))
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            maintenance = await maintenance_input(chaos_database_url)
            token = f"{run_token}-{layout}"
            diamonds, requests = await start_at_pace(client, scenario, token, maintenance)
        loading.set()
        await loop
        ids = diamonds | requests
        await wait_for_outcomes(engine, ids, scenario.deadline)
        verdict = await verify(engine, ids, requests, chaos_database_url)
        verdict.watchdog_resumes = scaling.log_lines("watchdog: execution")
        verdict.stale_dropped = scaling.log_lines("fetched before a rebalance")
        verdict.guard_heals = scaling.log_lines("progress guard: ")
        line = f"[{layout}] " + verdict.line(scaling.summary())
        print(line)
        if not verdict.ok or verdict.watchdog_resumes or verdict.guard_heals:
            stalled = scaling.stalled_executions()
            print(await evidence(engine, (verdict.missing + stalled)[:5]))
            print(scaling.stall_reports())
        assert verdict.ok, f"{line}\n{scaling.log_tails()}"
        assert (scaling.joins >= 2 and scaling.behind >= 1) or scenario is SCALE_SHORT, line
        assert scaling.forced == 0, line  # a clean leave ends on SIGTERM
    finally:
        scaling.stop_all()
