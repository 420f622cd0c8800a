"""Steady state, faults, verify: executions started at a steady pace while workers are
killed with SIGKILL and restarted on their data directories (once while a third worker
joins the group), then a verifier that reads only the public topics and PostgreSQL.

CI runs the short scenario inside `make test`; `make chaos` runs the full one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepstream.streams.settings import Settings
from stepstream.workflows import parse_definition
from tests.chaos.faults import FULL, LAYOUTS, SHORT, Faults, Scenario
from tests.chaos.load import REFERENCE, SLEEPY, run_scenario
from tests.integration.workers import engine_env, prepare


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return FULL if os.environ.get("STEPSTREAM_CHAOS") == "full" else SHORT


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
    faults = Faults(env, tmp_path, LAYOUTS[layout], scenario=scenario)
    for name in LAYOUTS[layout]:
        faults.start(name)
    try:
        verdict, line = await run_scenario(
            engine,
            faults,
            lambda until: faults.run(until=until),
            lambda: f"kills {faults.kills} ({faults.rebalance_kills} during a rebalance)",
            scenario,
            f"{run_token}-{layout}",
            chaos_database_url,
            layout,
        )
        assert verdict.ok, f"{line}\n{faults.log_tails()}"
        # The watchdog is a safety net; here it must have had nothing to catch.
        assert verdict.watchdog_resumes == 0, line
    finally:
        faults.stop_all()
