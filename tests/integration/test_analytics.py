"""Execution analytics against a real worker: `stepstream analytics -o json` agrees with
counts the test computes itself from the recorded attempts (outcomes per version, steps'
attempts, failures and retries, duration and wait percentiles, the critical path), for
every tenant and for one; the rollups move an execution retried to completion from
failed to completed and count a batch written twice once; the workers' counters are
sampled over time."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from stepstream.agents.audit_rows import AuditRows
from stepstream.agents.persister import Persister
from stepstream.infra.histogram import bucket_of
from stepstream.streams.engine import Engine
from stepstream.streams.settings import Settings
from tests.integration.console_helpers import recorded, start
from tests.integration.workers import cli, definition, engine_env, prepare, running_worker
from tests.waiting import wait_until

EXACT_WITHIN = 0.1  # a percentile read from the histograms is the middle of a 10% bucket


def workflows(name: str) -> tuple[Any, Any]:
    """v1: a diamond whose c fails once and is retried; v2: b fails for good."""
    first = definition(
        {
            "id": name,
            "version": 1,
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "sleep", "dependsOn": ["a"], "config": {"seconds": 0.3}},
                {
                    "id": "c",
                    "type": "fail",
                    "dependsOn": ["a"],
                    "config": {"attempts": 1},
                    "retry": {"maxAttempts": 2, "initialBackoffMs": 10},
                },
                {"id": "d", "type": "noop", "dependsOn": ["b", "c"]},
            ],
        }
    )
    second = definition(
        {
            "id": name,
            "version": 2,
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "fail", "dependsOn": ["a"], "config": {"permanent": True}},
            ],
        }
    )
    return first, second


@pytest.fixture(scope="module")
def analysed(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str], str, str]]:
    """Executions of both versions, in two tenants, run to their end by a real worker."""
    env = engine_env(settings, f"test-{run_token}-analytics", STEPSTREAM_METRICS_SAMPLE_SECONDS="1")
    engine = Settings.from_env(env)
    name = f"analysed-{run_token}"
    first, second = workflows(name)
    asyncio.run(prepare(engine, first))
    tenants = (f"{run_token}-t1", f"{run_token}-t2")
    workdir = tmp_path_factory.mktemp("analytics")
    with running_worker(engine, env, "analytics-w1", workdir):
        ids = [f"{run_token}-an-{n}" for n in range(8)]
        for n, execution_id in enumerate(ids):
            start(engine, name, execution_id, tenants[n % 2])
        for execution_id in ids:
            recorded(engine, execution_id, "completed")
        asyncio.run(prepare(engine, second))
        failing = [f"{run_token}-an-v2-{n}" for n in range(3)]
        for execution_id in failing:
            start(engine, name, execution_id, tenants[0])
        for execution_id in failing:
            recorded(engine, execution_id, "failed")
        yield engine, env, name, tenants[1]


def attempts_of(settings: Settings, workflow: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(settings.database_url)
        try:
            rows = await connection.fetch(
                "SELECT e.workflow_version, e.status AS outcome, e.tenant_id, e.started_at AS"
                " e_started, e.finished_at AS e_finished, s.* FROM workflow_executions e"
                " JOIN workflow_execution_steps s USING (execution_id) WHERE e.workflow_id = $1",
                workflow,
            )
            return [dict(row) for row in rows]
        finally:
            await connection.close()

    return asyncio.run(go())


def ms(since: datetime, until: datetime) -> float:
    return (until - since).total_seconds() * 1000


def exact(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def near(reported: float | None, values: list[float], fraction: float) -> bool:
    """Reported from the histogram: in the same 10% bucket as the exact value."""
    expected = exact(values, fraction)
    return reported is not None and bucket_of(reported) == bucket_of(expected)


def analytics(env: dict[str, str], *args: str) -> dict[str, Any]:
    answer = cli(env, "analytics", *args, "--since", "2h", "-o", "json")
    assert answer.returncode == 0, answer.stderr
    result: dict[str, Any] = json.loads(answer.stdout)
    return result


def test_the_figures_match_counts_computed_from_the_recorded_attempts(
    analysed: tuple[Settings, dict[str, str], str, str],
) -> None:
    settings, env, name, _ = analysed
    rows = attempts_of(settings, name)
    found = analytics(env, name)
    executions = {(r["execution_id"], r["workflow_version"], r["outcome"]) for r in rows}
    outcomes = Counter((version, outcome) for _, version, outcome in executions)
    assert {
        (v["version"], status): n for v in found["versions"] for status, n in v["outcomes"].items()
    } == dict(outcomes)
    assert outcomes == {(1, "completed"): 8, (2, "failed"): 3}
    durations = {
        r["execution_id"]: ms(r["e_started"], r["e_finished"])
        for r in rows
        if r["outcome"] == "completed"
    }
    v1 = next(v for v in found["versions"] if v["version"] == 1)
    assert near(v1["duration_ms"]["p50"], list(durations.values()), 0.5)
    assert near(v1["duration_ms"]["p95"], list(durations.values()), 0.95)
    ran = [r for r in rows if r["attempt"] > 0]
    steps = {s["step_id"]: s for s in found["steps"]}
    for step in ("a", "b", "c", "d"):
        mine = [r for r in ran if r["step_id"] == step]
        failed = [r for r in mine if r["status"] in ("failed", "timed_out")]
        assert steps[step]["attempts"] == len(mine), step
        assert steps[step]["failures"] == len(failed), step
        assert steps[step]["retries"] == sum(1 for r in mine if r["attempt"] > 1), step
        took = [ms(r["started_at"], r["finished_at"]) for r in mine if r["status"] == "completed"]
        if took:
            assert near(steps[step]["duration_ms"]["p50"], took, 0.5), step
        waited = [ms(r["released_at"], r["started_at"]) for r in mine if r["released_at"]]
        assert len(waited) == len(mine), "every attempt's release is recorded"
        assert near(steps[step]["wait_ms"]["p50"], waited, 0.5), step
    assert steps["c"]["failures"] == 8 and steps["c"]["retries"] == 8  # once each, v1
    assert steps["b"]["failures"] == 3  # v2's permanent failures
    # The critical path, computed here: a, then whichever of b and c finished last, then d.
    finish = {
        (r["execution_id"], r["step_id"]): r["finished_at"]
        for r in ran
        if r["status"] == "completed"
    }
    critical: Counter[str] = Counter()
    for execution_id in durations:
        last = max(("b", "c"), key=lambda s: (finish[(execution_id, s)], s))
        critical.update(["a", last, "d"])
    assert {s: steps[s]["critical_path"] for s in steps} == {s: critical.get(s, 0) for s in steps}


def test_a_tenant_sees_its_own_figures(
    analysed: tuple[Settings, dict[str, str], str, str],
) -> None:
    _, env, name, second_tenant = analysed
    found = analytics(env, name, "--tenant", second_tenant)
    assert [(v["version"], v["outcomes"]) for v in found["versions"]] == [(1, {"completed": 4})]
    assert {s["step_id"]: s["attempts"] for s in found["steps"]} == {"a": 4, "b": 4, "c": 8, "d": 4}


async def rollup_counts(settings: Settings, workflow: str) -> dict[str, int]:
    connection = await asyncpg.connect(settings.database_url)
    try:
        rows = await connection.fetch(
            "SELECT status, sum(executions)::int AS n FROM analytics_executions"
            " WHERE workflow_id = $1 GROUP BY 1 HAVING sum(executions) <> 0",
            workflow,
        )
        attempts = await connection.fetchval(
            "SELECT sum(attempts)::int FROM analytics_step_attempts WHERE workflow_id = $1",
            workflow,
        )
        return {row["status"]: row["n"] for row in rows} | {"attempts": attempts or 0}
    finally:
        await connection.close()


def test_an_execution_retried_to_completion_moves_from_failed_to_completed(
    analysed: tuple[Settings, dict[str, str], str, str], run_token: str, tmp_path: Path
) -> None:
    settings, env, _, tenant = analysed
    name = f"moved-{run_token}"
    once = definition(
        {
            "id": name,
            "steps": [
                {"id": "a", "type": "noop"},
                {"id": "b", "type": "fail", "dependsOn": ["a"], "config": {"attempts": 1}},
            ],
        }
    )
    asyncio.run(prepare(settings, once))
    execution_id = f"{run_token}-moved"
    with running_worker(settings, env, "analytics-w2", tmp_path):
        start(settings, name, execution_id, tenant)
        recorded(settings, execution_id, "failed")
        assert asyncio.run(rollup_counts(settings, name)) == {"failed": 1, "attempts": 2}
        answer = cli(env, "replay", execution_id, "retry", "--by", "analytics-test", "--wait")
        assert answer.returncode == 0, answer.stderr
        recorded(settings, execution_id, "completed")

        async def moved() -> bool:
            return await rollup_counts(settings, name) == {"completed": 1, "attempts": 3}

        asyncio.run(wait_until(moved, 30, "the execution counted as completed, not failed"))


async def test_a_batch_the_persister_writes_twice_is_counted_once(
    settings: Settings, run_token: str
) -> None:
    """A worker that crashes after writing a batch and before committing its offsets
    writes it again: the rollups must not count it twice."""
    name, execution_id = f"twice-{run_token}", f"{run_token}-twice"
    at = datetime.now(UTC)
    head = (execution_id, name, 1, f"{run_token}-t1", "u")
    ended = ("completed", "{}", "{}", None, None, at - timedelta(seconds=2), at)
    step = (execution_id, "a", 1, "noop", "completed", "{}", None, "w", at - timedelta(seconds=1))
    rows = AuditRows(
        executions=[(*head, *ended)],
        steps=[(*step, at, head[3], at - timedelta(seconds=1.5), name, 1)],
        completed=[execution_id],
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)

    async def database() -> asyncpg.Pool:
        return pool

    try:
        persister = Persister(cast(Engine, None), database)  # write() uses the database only
        await persister.write(rows)
        once = await rollup_counts(settings, name)
        await persister.write(rows)
        assert await rollup_counts(settings, name) == once == {"completed": 1, "attempts": 1}
    finally:
        await pool.close()


def test_the_workers_counters_are_sampled_over_time(
    analysed: tuple[Settings, dict[str, str], str, str],
) -> None:
    _, env, name, _ = analysed
    found = analytics(env, name)
    lookups = [
        hour
        for hour in found["counters"]
        if hour.get("cache.definitions.hit", 0) + hour.get("cache.definitions.miss", 0) > 0
    ]
    assert lookups, found["counters"]


async def test_the_databases_buckets_are_the_histograms(settings: Settings) -> None:
    """The rollups bucket in SQL (analytics_bucket), the readers in Python (bucket_of):
    the two must agree, or every percentile is off by a bucket."""
    values = [0.0, 0.4, 1.0, 1.09, 1.1, 1.11, 7.5, 99.9, 1_000.0, 12_345.6, 3.6e6, 8.64e7]
    values += [1.1**n for n in range(0, 200, 7)]
    connection = await asyncpg.connect(settings.database_url)
    try:
        rows = await connection.fetch(
            "SELECT v, analytics_bucket(v) AS b FROM unnest($1::float8[]) AS v", values
        )
    finally:
        await connection.close()
    assert {row["v"]: row["b"] for row in rows} == {v: bucket_of(v) for v in values}
