"""A service goes down under a running worker, on a private set of services.

The suite's own services keep running; this module starts another Kafka, PostgreSQL and
Redis (`infra/local/services.sh` on other ports, in a state directory of its own) and stops
one of them for a while, as an operator's restart or a crash would:

- the broker down for 12 s: the worker says so in a bounded number of lines (without the
  repeat throttle, 100,000+ in a 10 s outage) and works again once the broker is back;
- PostgreSQL down for 30 s: the reference workflow's retry policy rides it out, and the
  execution completes without an operator.

How long a service stays down is the fault being injected; everything the tests wait
for is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from stepstream.client.workflow_client import WorkflowClient
from stepstream.schemas.codec import DecodedEvent
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import parse_definition
from tests.integration.workers import (
    NOOP_DIAMOND,
    WorkerProcess,
    engine_env,
    own_property,
    prepare,
    read_topic,
    wait_until_ready,
)
from tests.waiting import hold_for, until_moment

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "local" / "services.sh"
REFERENCE = ROOT / "demo" / "examples" / "maintenance-request.yaml"
BROKER_DOWN_SECONDS = 12.0
DATABASE_DOWN_SECONDS = 30.0
# A warning or error line: faust's format is "[time] [pid] [LEVEL] message".
NOISY_LINE = re.compile(r"^\[[^]]+\] \[\d+\] \[(WARNING|ERROR|CRITICAL)\]")


class PrivateServices:
    """A private Kafka, PostgreSQL and Redis, each of which can be stopped and restarted."""

    def __init__(self, state: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHON": sys.executable,
            "STEPSTREAM_STATE_DIR": str(state),
            "STEPSTREAM_KAFKA_PORT": "39092",
            "STEPSTREAM_KAFKA_CONTROLLER_PORT": "39093",
            "STEPSTREAM_PG_PORT": "35432",
            "STEPSTREAM_REDIS_PORT": "36379",
            "STEPSTREAM_KAFKA_HEAP": "384m",
        }
        self.urls = {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39092",
            "DATABASE_URL": "postgresql://stepstream:stepstream@127.0.0.1:35432/stepstream",
            "REDIS_URL": "redis://127.0.0.1:36379/0",
        }

    def run(self, action: str, *names: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), action, *names],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, f"services {action} {names}: {done.stderr}"

    def up(self, *names: str) -> None:
        self.run("up", *names)

    def down(self, *names: str) -> None:
        self.run("down", *names)


@pytest.fixture(scope="module")
def private_services() -> Iterator[PrivateServices]:
    # Not under pytest's tmp_path: PostgreSQL runs as its own user and must reach the dir.
    state = Path(tempfile.mkdtemp(prefix="stepstream-outages-", dir="/var/tmp"))
    state.chmod(0o755)
    services = PrivateServices(state)
    try:
        services.up()
        migrate = subprocess.run(
            [sys.executable, "-m", "stepstream", "db", "migrate"],
            env={**os.environ, **services.urls},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        yield services
    finally:
        services.down()
        shutil.rmtree(state, ignore_errors=True)


def worker_on(
    services: PrivateServices, settings: Settings, prefix: str, workdir: Path
) -> tuple[Settings, WorkerProcess]:
    env = engine_env(settings, prefix, **services.urls)
    engine = Settings.from_env(env)
    return engine, WorkerProcess(f"{prefix}-w1", env, workdir)


def noisy_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if NOISY_LINE.match(line)]


def test_a_broker_outage_is_logged_in_few_lines_and_work_resumes_after_it(
    private_services: PrivateServices, settings: Settings, run_token: str, tmp_path: Path
) -> None:
    engine, worker = worker_on(private_services, settings, f"outage-{run_token}-kafka", tmp_path)
    try:
        asyncio.run(prepare(engine, NOOP_DIAMOND))
        asyncio.run(wait_until_ready(engine, [worker], 120))
        before_outage = worker.log_path.stat().st_size

        private_services.down("kafka")
        hold_for(BROKER_DOWN_SECONDS)  # the fault: the broker stays down this long
        private_services.up("kafka")

        async def run_one() -> str:
            async with WorkflowClient(engine) as client:
                execution_id = await client.start_workflow("noop-diamond", {}, "t", "u")
                return (await client.wait_for(execution_id, timeout=120)).status

        assert asyncio.run(run_one()) == "completed"
        assert worker.process.poll() is None, worker.log_tail()
        with worker.log_path.open("rb") as log:
            log.seek(before_outage)
            during = log.read().decode(errors="replace")
        noisy = noisy_lines(during)
        assert noisy, "the outage went unnoticed in the log"
        # One line per state change and a summary per 10 s; 100,000+ without the throttle.
        assert len(noisy) < 150, "\n".join(noisy[:40])
    finally:
        worker.stop()


async def request_rows(database_url: str, execution_id: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM maintenance_requests"
            " WHERE split_part(idempotency_key, '/', 1) = $1",
            execution_id,
        )
        return int(count)
    finally:
        await connection.close()


def test_the_reference_workflow_rides_out_a_database_restart(
    private_services: PrivateServices, settings: Settings, run_token: str, tmp_path: Path
) -> None:
    engine, worker = worker_on(private_services, settings, f"outage-{run_token}-pg", tmp_path)
    database_url = private_services.urls["DATABASE_URL"]
    place = asyncio.run(own_property(database_url))
    names = TopicNames.for_prefix(engine.topic_prefix)

    def failed_once(execution_id: str) -> Callable[[list[DecodedEvent]], bool]:
        return lambda events: any(
            e.name == "StepFailed" and e.record["execution_id"] == execution_id for e in events
        )

    async def scenario() -> str:
        async with WorkflowClient(engine) as client:
            await asyncio.to_thread(private_services.down, "postgres")
            down_at = time.monotonic()
            execution_id = await client.start_workflow(
                "maintenance-request",
                {**place, "title": "Leak during a database restart"},
                "tenant-outage",
                "user-1",
            )
            # A step has failed against the stopped database at least once ...
            await read_topic(engine, names.step_completed, until=failed_once(execution_id))
            # ... and the database stays down well beyond the old 1.5 s retry budget.
            await until_moment(down_at + DATABASE_DOWN_SECONDS)
            await asyncio.to_thread(private_services.up, "postgres")
            outcome = await client.wait_for(execution_id, timeout=150)
            assert outcome.status == "completed", (outcome.record, worker.log_tail())
            return execution_id

    try:
        asyncio.run(prepare(engine, parse_definition(REFERENCE.read_text())))
        asyncio.run(wait_until_ready(engine, [worker], 120))
        execution_id = asyncio.run(scenario())
        assert asyncio.run(request_rows(database_url, execution_id)) == 1
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
