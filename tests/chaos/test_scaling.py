"""Steady state, scale out and in, verify: executions started at a steady pace while
workers join (empty or far-behind data directories) and leave cleanly, in a loop, in
both layouts; then the verifier reads the public topics and PostgreSQL.

CI runs the short loop inside `make test`; `make chaos` runs the long one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepstream.streams.settings import Settings
from stepstream.workflows import parse_definition
from tests.chaos.faults import LAYOUTS
from tests.chaos.load import REFERENCE, SLEEPY, run_scenario
from tests.chaos.scaling import SCALE_FULL, SCALE_SHORT, Scaling
from tests.integration.workers import engine_env, prepare


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
        verdict, line = await run_scenario(
            engine,
            scaling,
            lambda until: scaling.run(until=until),
            scaling.summary,
            scenario,
            f"{run_token}-{layout}",
            chaos_database_url,
            layout,
        )
        assert verdict.ok, f"{line}\n{scaling.log_tails()}"
        assert scaling.behind >= 1, line  # at least one join on a store far behind
        assert scaling.forced == 0, line  # a clean leave ends on SIGTERM
    finally:
        scaling.stop_all()
