"""The waiting chaos test: executions that sleep on durable timers and wait for events
by business key while workers are SIGKILLed and restarted, in both layouts, with events
sent before and after their waits begin, some twice. The verdict requires every
execution to complete, every timer to fire once and never early, and every event to be
applied once, to its own execution.

CI runs the short scenario inside `make test`; `make chaos` runs the full one
(STEPSTREAM_CHAOS=full). The verdict line is printed either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepstream.streams.settings import Settings
from tests.chaos.faults import LAYOUTS, Faults, Scenario, load_while_killing
from tests.chaos.load import wait_for_outcomes
from tests.chaos.verifier import verify
from tests.chaos.waiting import WAITS, start_waiting_at_pace, verify_waits
from tests.integration.workers import engine_env, prepare

SHORT = Scenario(
    diamonds=200,
    maintenance=0,
    start_rate=10,
    kill_every=5,
    down_for=1,
    join_at_kill=2,
    deadline=180,
)
FULL = Scenario(
    diamonds=1_000,
    maintenance=0,
    start_rate=20,
    kill_every=6,
    down_for=1,
    join_at_kill=4,
    deadline=300,
)


@pytest.mark.parametrize("layout", ["one", "split"])
async def test_every_timer_fires_once_and_every_event_is_applied_once_while_workers_die(
    layout: str,
    settings: Settings,
    run_token: str,
    chaos_database_url: str,
    tmp_path: Path,
) -> None:
    scenario = FULL if os.environ.get("STEPSTREAM_CHAOS") == "full" else SHORT
    env = engine_env(settings, f"test-{run_token}-waits-{layout}", DATABASE_URL=chaos_database_url)
    engine = Settings.from_env(env)
    await prepare(engine, WAITS)
    faults = Faults(env, tmp_path, LAYOUTS[layout], scenario=scenario)
    token = f"{run_token}-{layout}"
    try:
        sent = await load_while_killing(
            faults,
            engine,
            lambda client: start_waiting_at_pace(
                client, scenario.executions, scenario.start_rate, token
            ),
        )
        ids = {item.execution_id for item in sent}
        await wait_for_outcomes(engine, ids, scenario.deadline)
        general = await verify(engine, ids, set(), chaos_database_url)
        general.watchdog_resumes = faults.log_lines("watchdog: execution")
        waits = await verify_waits(engine, sent)
        line = f"[{layout}] " + waits.line(general, f"kills {faults.kills}", sent)
        print(line)
        assert general.ok and waits.ok, f"{line}\n{faults.log_tails()}"
    finally:
        faults.stop_all()
