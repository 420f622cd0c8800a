"""How long the analytics take as history grows: 10 million step rows, then each query.

    .venv/bin/python bench/analytics.py [--steps 10000000] [--workflows 10] [--days 30]

In a schema of its own (dropped at the end), with the project's migrations: executions
of `--workflows` workflows (two versions, 20 tenants, four steps each, one retried in
20 of them) spread over `--days` days, written with the rollup triggers on, as the
persister writes them. Then, for one workflow, each analytics query over 24 hours, 7
days and the whole range (best of three), beside the same figures computed from the raw
attempts; and what the triggers cost a persister batch of 500 attempts. Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from stepstream.infra import analytics
from stepstream.infra.db import migrate

SCHEMA = "bench_analytics"
CHUNK = 200_000  # executions per statement: the triggers' transition tables stay moderate

FILL_EXECUTIONS = """
INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, tenant_id,
    status, started_at, finished_at, n)
SELECT 'x' || n, 'workflow-' || (n % $3), 1 + (n % 7 = 0)::int, 'tenant-' || (n % 20),
    CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'completed' END,
    $4::timestamptz + (n::float8 / $2) * $5::interval,
    $4::timestamptz + (n::float8 / $2) * $5::interval + (200 + (n * 7919) % 5000) * interval '1 ms',
    n
FROM generate_series($1::bigint, $1 + $6 - 1) AS n
"""
# Four steps per execution: a, b and c in parallel after a, d; c's first attempt fails in
# one execution of 20 and runs again.
FILL_STEPS = """
INSERT INTO workflow_execution_steps (execution_id, step_id, attempt, step_type, status,
    started_at, finished_at, released_at, workflow_id, workflow_version, tenant_id)
SELECT e.execution_id, s.step_id, s.attempt, 'noop', s.status,
    e.started_at + s.offset_ms * interval '1 ms',
    e.started_at + (s.offset_ms + s.took_ms) * interval '1 ms',
    e.started_at + (s.offset_ms - s.wait_ms) * interval '1 ms',
    e.workflow_id, e.workflow_version, e.tenant_id
FROM workflow_executions e,
LATERAL (VALUES
    ('a', 1, 'completed', 5, 3 + (e.n % 40), 2 + e.n % 9),
    ('b', 1, 'completed', 60, 80 + (e.n * 31) % 900, 3 + e.n % 11),
    ('c', 1, CASE WHEN e.n % 20 = 0 THEN 'failed' ELSE 'completed' END, 60,
        40 + (e.n * 17) % 1200, 3 + e.n % 13),
    ('c', 2, 'completed', 1400, 50, 4),
    ('d', 1, 'completed', 2700, 2 + e.n % 30, 2 + e.n % 7)
) AS s (step_id, attempt, status, offset_ms, took_ms, wait_ms)
WHERE e.n BETWEEN $1 AND $1 + $2 - 1 AND (s.attempt = 1 OR e.n % 20 = 0)
"""
FILL_CRITICAL = """
INSERT INTO workflow_critical_steps (execution_id, step_id, workflow_id, workflow_version,
    tenant_id, finished_at)
SELECT e.execution_id, s.step_id, e.workflow_id, e.workflow_version, e.tenant_id, e.finished_at
FROM workflow_executions e,
LATERAL (VALUES ('a'), (CASE WHEN (e.n * 31) % 900 > (e.n * 17) % 1200 THEN 'b' ELSE 'c' END),
                ('d')) AS s (step_id)
WHERE e.n BETWEEN $1 AND $1 + $2 - 1 AND e.status = 'completed'
"""

# The same figures from the attempts themselves, for comparison.
RAW_STEPS = """
SELECT step_id, count(*), count(*) FILTER (WHERE status = 'failed'),
    percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - started_at),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY finished_at - started_at)
FROM workflow_execution_steps WHERE workflow_id = $1 AND finished_at >= $2
GROUP BY step_id
"""
RAW_EXECUTIONS = """
SELECT workflow_version, status, count(*),
    percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - started_at)
FROM workflow_executions WHERE workflow_id = $1 AND started_at >= $2 GROUP BY 1, 2
"""


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        await work()
        best = min(best, time.perf_counter() - began)
    return best * 1000


async def fill(connection: asyncpg.Connection, steps: int, workflows: int, days: int) -> int:
    executions = steps * 20 // 81  # 4 steps each, and a retry in one of 20
    origin = datetime.now(UTC) - timedelta(days=days)
    # A number per execution, for generating its steps; indexed for the chunks' joins.
    await connection.execute("ALTER TABLE workflow_executions ADD COLUMN n bigint")
    await connection.execute("CREATE INDEX ON workflow_executions (n)")
    began = time.perf_counter()
    for first in range(0, executions, CHUNK):
        size = min(CHUNK, executions - first)
        args = (first, executions, workflows, origin, timedelta(days=days), size)
        await connection.execute(FILL_EXECUTIONS, *args)
        await connection.execute(FILL_STEPS, first, size)
        await connection.execute(FILL_CRITICAL, first, size)
        print(f"  {first + size:>10,} executions written", flush=True)
    took = time.perf_counter() - began
    count = await connection.fetchval("SELECT count(*) FROM workflow_execution_steps")
    print(f"filled {executions:,} executions, {count:,} step rows in {took:.0f} s")
    await connection.execute("VACUUM ANALYZE")  # as autovacuum leaves a live table
    return int(count)


async def sizes(connection: asyncpg.Connection) -> None:
    for table in (
        "workflow_execution_steps",
        "workflow_executions",
        "analytics_executions",
        "analytics_step_attempts",
        "analytics_step_times",
        "analytics_step_critical",
    ):
        rows = await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        size = await connection.fetchval("SELECT pg_total_relation_size($1)", table)
        print(f"  {table:<26} {rows:>12,} rows {size / 2**20:>9,.0f} MiB")


async def queries(connection: asyncpg.Connection, days: int) -> None:
    now = datetime.now(UTC)
    print("query times for workflow-3, best of 3 (ms):")
    print(
        f"  {'range':<8}{'all figures':>12}{'tenant-scoped':>15}{'raw steps':>11}{'raw runs':>10}"
    )
    tenants = ["tenant-3", "tenant-13"]
    spans = (("24h", timedelta(hours=24)), ("7d", timedelta(days=7)))
    for name, span in (*spans, (f"{days}d", timedelta(days=days))):
        since = now - span
        works = (
            lambda since=since: analytics.workflow_analytics(connection, "workflow-3", since),
            lambda since=since: analytics.workflow_analytics(
                connection, "workflow-3", since, tenant_ids=tenants
            ),
            lambda since=since: connection.fetch(RAW_STEPS, "workflow-3", since),
            lambda since=since: connection.fetch(RAW_EXECUTIONS, "workflow-3", since),
        )
        times = [await timed(work) for work in works]
        widths = (12, 15, 11, 10)
        print(f"  {name:<8}" + "".join(f"{t:>{w},.0f}" for t, w in zip(times, widths, strict=True)))
    for label, sql in (
        ("outcomes", analytics.OUTCOMES),
        ("durations", analytics.DURATIONS),
        ("throughput", analytics.THROUGHPUT),
        ("attempts", analytics.ATTEMPTS),
        ("step times", analytics.TIMES),
        ("critical path", analytics.CRITICAL),
    ):
        args = ("workflow-3", now - timedelta(days=days), now, None, None)
        took = await timed(lambda sql=sql, args=args: connection.fetch(sql, *args))
        print(f"  {label:<14} over {days}d: {took:,.1f} ms")


async def trigger_cost(connection: asyncpg.Connection) -> None:
    """A persister batch of 500 attempts, with the rollup triggers and without."""
    copy = """
    INSERT INTO workflow_execution_steps (execution_id, step_id, attempt, step_type, status,
        started_at, finished_at, released_at, workflow_id, workflow_version, tenant_id)
    SELECT 'batch-' || $1 || '-' || n, 'a', 1, 'noop', 'completed', now(), now(), now(),
        'workflow-' || (n % 10), 1, 'tenant-' || (n % 20)
    FROM generate_series(1, 500) AS n
    """
    results = {}
    for label, enable in (("with triggers", True), ("without", False)):
        state = "ENABLE" if enable else "DISABLE"
        await connection.execute(f"ALTER TABLE workflow_execution_steps {state} TRIGGER USER")
        samples = []
        for run in range(20):
            began = time.perf_counter()
            async with connection.transaction():
                await connection.execute(copy, f"{label}-{run}")
            samples.append((time.perf_counter() - began) * 1000)
        results[label] = sorted(samples)[len(samples) // 2]
    await connection.execute("ALTER TABLE workflow_execution_steps ENABLE TRIGGER USER")
    extra = results["with triggers"] - results["without"]
    print(
        f"a batch of 500 attempts: {results['with triggers']:.1f} ms with the rollup triggers,"
        f" {results['without']:.1f} ms without ({extra / 500 * 1000:.0f} us per attempt)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help=f"keep schema {SCHEMA} to look at")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    admin = await asyncpg.connect(url)
    await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}")
    try:
        connection = await asyncpg.connect(url, server_settings={"search_path": SCHEMA})
        try:
            await migrate(connection)
            await fill(connection, args.steps, args.workflows, args.days)
            await sizes(connection)
            await queries(connection, args.days)
            await trigger_cost(connection)
        finally:
            await connection.close()
    finally:
        if not args.keep:
            await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
