"""Rate limiting on the real broker: per user, per tenant, per-workflow overrides, and
counts that survive a worker restart (rebuilt from the changelog)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.streams.events import now_ms
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    cli,
    definition,
    engine_env,
    prepare,
    read_topic,
    wait_until_ready,
)

PLAIN = definition({"id": "rl-plain", "steps": [{"id": "a", "type": "noop"}]})
STRICT = definition(
    {
        "id": "rl-strict",
        "rateLimit": {"points": 2, "windowSeconds": 600},
        "steps": [{"id": "a", "type": "noop"}],
    }
)
DEFERRING = definition(
    {
        "id": "rl-defer",
        "rateLimit": {"points": 2, "windowSeconds": 4, "policy": "defer"},
        "steps": [{"id": "a", "type": "noop"}],
    }
)
# Long windows: the module must stay inside one window even on a slow machine.
LIMITS = {
    "WORKFLOW_RATE_LIMIT_ENABLED": "true",
    "WORKFLOW_RATE_LIMIT_POINTS": "10",
    "WORKFLOW_RATE_LIMIT_TENANT_POINTS": "15",
    "WORKFLOW_RATE_LIMIT_WINDOW_SECONDS": "600",
}


class Engine:
    def __init__(self, settings: Settings, env: dict[str, str], workdir: Path) -> None:
        self.settings, self.env, self.workdir = settings, env, workdir
        self.worker = WorkerProcess("rl-w1", env, workdir)

    def restart(self) -> None:
        self.worker.stop()
        self.worker = WorkerProcess("rl-w2", self.env, self.workdir)  # fresh local store
        asyncio.run(wait_until_ready(self.settings, [self.worker], 120))


@pytest.fixture(scope="module")
def engine(
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    env = engine_env(settings, f"test-{run_token}-rl", **LIMITS)
    running = Engine(Settings.from_env(env), env, tmp_path_factory.mktemp("rl"))
    asyncio.run(prepare(running.settings, PLAIN, STRICT, DEFERRING))
    try:
        asyncio.run(wait_until_ready(running.settings, [running.worker], 120))
        yield running
    finally:
        running.worker.stop()


async def starts(
    settings: Settings, workflow: str, tenant: str, user: str, count: int
) -> list[Outcome]:
    async with WorkflowClient(settings) as client:
        ids = [await client.start_workflow(workflow, {}, tenant, user) for _ in range(count)]
        return list(await asyncio.gather(*(client.wait_for(i, timeout=60) for i in ids)))


def test_the_eleventh_start_of_a_user_is_rejected_with_reset_at(engine: Engine) -> None:
    before = now_ms()
    outcomes = asyncio.run(starts(engine.settings, "rl-plain", "tenant-1", "user-1", 11))
    assert [o.status for o in outcomes] == ["completed"] * 10 + ["rejected"]
    refused = outcomes[-1].record
    assert refused["code"] == "rate_limited"
    assert refused["limit"] == "user:10/600s"
    assert "user user-1" in refused["reason"]
    assert refused["reset_at"] > before


def test_another_user_is_not_affected_until_the_tenant_limit(engine: Engine) -> None:
    outcomes = asyncio.run(starts(engine.settings, "rl-plain", "tenant-1", "user-2", 6))
    # The tenant allows 15 per window: user-1 used 10, so user-2 gets 5.
    assert [o.status for o in outcomes] == ["completed"] * 5 + ["rejected"]
    assert outcomes[-1].record["limit"] == "tenant:15/600s"


def test_a_workflow_can_set_its_own_limit(engine: Engine) -> None:
    outcomes = asyncio.run(starts(engine.settings, "rl-strict", "tenant-2", "user-1", 3))
    assert [o.status for o in outcomes] == ["completed", "completed", "rejected"]
    assert outcomes[-1].record["limit"] == "workflow:2/600s"


def test_deferred_starts_are_all_admitted_in_order_as_the_window_allows(
    engine: Engine,
) -> None:
    outcomes = asyncio.run(starts(engine.settings, "rl-defer", "tenant-4", "user-1", 5))
    assert [o.status for o in outcomes] == ["completed"] * 5
    names = TopicNames.for_prefix(engine.settings.topic_prefix)
    ids = [o.execution_id for o in outcomes]
    started = {
        e.record["execution_id"]: e.record["timestamp"]
        for e in asyncio.run(read_topic(engine.settings, names.executions))
        if e.name == "WorkflowStarted" and e.record["execution_id"] in ids
    }
    admitted = [started[i] for i in ids]
    assert admitted == sorted(admitted)  # in the order they were requested
    assert admitted[-1] - admitted[0] >= 2_000  # 2 per 4 s: the limit really held them


def test_counts_survive_a_worker_restart(engine: Engine) -> None:
    engine.restart()  # a new worker with an empty local store: counts come from Kafka
    outcomes = asyncio.run(starts(engine.settings, "rl-plain", "tenant-1", "user-1", 1))
    assert outcomes[0].status == "rejected"
    fresh = asyncio.run(starts(engine.settings, "rl-plain", "tenant-3", "user-1", 1))
    assert fresh[0].status == "completed"


def test_stats_show_allowed_and_rejected_per_tenant(engine: Engine) -> None:
    def totals(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
        return json.loads(result.stdout)["starts"] if result.returncode == 0 else {}

    def tenant_1(result: subprocess.CompletedProcess[str]) -> dict[str, int | None]:
        counts = totals(result).get("tenant-1", {})
        return {"allowed": counts.get("allowed"), "rejected": counts.get("rejected")}

    expected = {"allowed": 15, "rejected": 3}  # rejected: user-1 twice, user-2 once
    # Workers mirror the totals to Redis every 2 s: wait for the last ones to arrive.
    result = cli(
        engine.env,
        *("stats", "-o", "json"),
        until=lambda r: (
            tenant_1(r) == expected and totals(r).get("tenant-4", {}).get("allowed") == 5
        ),
    )
    assert result.returncode == 0, result.stderr
    assert tenant_1(result) == expected
    deferring = totals(result)["tenant-4"]
    assert deferring["allowed"] == 5  # all admitted in the end
    assert deferring["deferred"] >= 3  # at least 3 had to wait
    table = cli(engine.env, "stats")  # and the table a person reads says the same
    line = next(row for row in table.stdout.splitlines() if "tenant-1" in row)
    assert [cell.strip() for cell in line.split("│")[2:4]] == ["15", "3"]
