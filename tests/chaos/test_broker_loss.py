"""Brokers lost mid-run, on the 3-node cluster with RF 3 and min.insync.replicas=2: the
busiest broker killed and restarted in a loop, one down for a minute (full run), two
down at once (no quorum: writes block). Verdict: every execution completes, duplicates
only with identical event ids; printed: the time until the pipeline flows again after
each kill, and the worker logs' ERROR lines per second during the outages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stepstream.streams.settings import Settings
from stepstream.workflows import parse_definition
from tests.chaos.broker_faults import (
    FULL_BROKERS,
    SHORT_BROKERS,
    BrokerFaults,
    error_lines_per_second,
)
from tests.chaos.faults import LAYOUTS, Scenario, Workers
from tests.chaos.load import REFERENCE, SLEEPY, run_scenario
from tests.cluster import KafkaCluster
from tests.integration.workers import engine_env, prepare

FULL = os.environ.get("STEPSTREAM_CHAOS") == "full"
LOAD = Scenario(
    diamonds=600 if FULL else 120,
    maintenance=150 if FULL else 30,
    start_rate=3,  # the load lasts while the whole fault schedule runs
    kill_every=0,  # workers are not killed here: brokers are
    down_for=0,
    join_at_kill=0,
    deadline=400 if FULL else 240,
)


@pytest.mark.parametrize("layout", ["one", "split"])
async def test_no_execution_is_lost_while_brokers_die(
    layout: str,
    settings: Settings,
    kafka_cluster: KafkaCluster,
    run_token: str,
    chaos_database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    env = engine_env(
        settings,
        f"test-{run_token}-brokers-{layout}",
        DATABASE_URL=chaos_database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka_cluster.bootstrap,
        STEPSTREAM_REPLICATION_FACTOR="3",
    )
    engine = Settings.from_env(env)
    await prepare(engine, SLEEPY, parse_definition(REFERENCE.read_text()))
    workers = Workers(env, tmp_path, LAYOUTS[layout])
    for name in LAYOUTS[layout]:
        workers.start(name)
    faults = BrokerFaults(kafka_cluster, engine, FULL_BROKERS if FULL else SHORT_BROKERS)
    try:
        verdict, line = await run_scenario(
            engine,
            workers,
            faults.run,
            faults.describe,
            LOAD,
            f"{run_token}-brokers-{layout}",
            chaos_database_url,
            layout,
        )
        print(f"[{layout}] {error_lines_per_second(workers.logs, faults.outages)}")
        assert verdict.ok, f"{line}\n{workers.log_tails()}"
        assert faults.recoveries, "no kill was timed"
    finally:
        workers.stop_all()
        kafka_cluster.up()
