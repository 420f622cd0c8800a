"""The composing chaos test: executions that fan out over 100 items and run a
sub-workflow while workers are SIGKILLed and restarted, in both layouts. It holds when no
instance is lost or doubled (every one decided once, the output whole and in item
order), no child is started twice, and each parent completes exactly once.

CI runs the short scenario inside `make test`; `make chaos` runs the full one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepstream.streams.settings import Settings
from tests.chaos.composing import CHILD, PARENT, child_of, start_composing_at_pace, verify_composing
from tests.chaos.faults import LAYOUTS, Faults, Scenario, load_while_killing
from tests.chaos.load import wait_for_outcomes
from tests.chaos.verifier import verify
from tests.integration.workers import engine_env, prepare

SHORT = Scenario(
    diamonds=16,
    maintenance=0,
    start_rate=1,
    kill_every=5,
    down_for=1,
    join_at_kill=2,
    deadline=240,
)
FULL = Scenario(
    diamonds=60,
    maintenance=0,
    start_rate=1,
    kill_every=6,
    down_for=1,
    join_at_kill=4,
    deadline=400,
)


@pytest.mark.parametrize("layout", ["one", "split"])
async def test_no_instance_is_lost_or_doubled_and_each_parent_completes_once(
    layout: str,
    settings: Settings,
    run_token: str,
    chaos_database_url: str,
    tmp_path: Path,
) -> None:
    scenario = FULL if os.environ.get("STEPSTREAM_CHAOS") == "full" else SHORT
    prefix = f"test-{run_token}-compose-{layout}"
    env = engine_env(settings, prefix, DATABASE_URL=chaos_database_url)
    engine = Settings.from_env(env)
    await prepare(engine, CHILD, PARENT)
    faults = Faults(env, tmp_path, LAYOUTS[layout], scenario=scenario)
    token = f"{run_token}-{layout}"
    try:
        parents = await load_while_killing(
            faults,
            engine,
            lambda client: start_composing_at_pace(
                client, scenario.executions, scenario.start_rate, token
            ),
        )
        ids = {*parents, *(child_of(p) for p in parents)}
        await wait_for_outcomes(engine, ids, scenario.deadline)
        general = await verify(engine, ids, set(), chaos_database_url)
        general.watchdog_resumes = faults.log_lines("watchdog: execution")
        composed = await verify_composing(engine, parents)
        line = f"[{layout}] " + composed.line(general, f"kills {faults.kills}")
        print(line)
        assert general.ok and composed.ok, f"{line}\n{faults.log_tails()}"
    finally:
        faults.stop_all()
