"""Execution analytics, read from the hourly rollups (migration 0012): per workflow and
version, outcomes, duration percentiles and throughput; per step, attempts, failures,
retries, durations, waits and how often it was on the critical path; the workers' cache
hit rates and rate-limit rejections over time. One query per figure, each summing
rollup rows (hours x versions x tenants x steps x buckets), never the attempts.

Ranges are whole hours: the hour `since` falls in is included, the one `until` falls in
is not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from stepstream.infra.histogram import percentile

# Each query: one workflow ($1), hours [$2, $3), the user's tenants ($4, NULL: every one)
# and a version ($5, NULL: every one). The rollups' keys begin (workflow_id, hour).
OUTCOMES = """
SELECT workflow_version, status, sum(executions)::bigint AS n FROM analytics_executions
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  GROUP BY 1, 2 HAVING sum(executions) <> 0
"""
DURATIONS = """
SELECT workflow_version, bucket, sum(executions)::bigint AS n FROM analytics_executions
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  AND status = 'completed' AND bucket >= 0 GROUP BY 1, 2
"""
THROUGHPUT = """
SELECT hour, status, sum(executions)::bigint AS n FROM analytics_executions
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  GROUP BY 1, 2 HAVING sum(executions) <> 0 ORDER BY 1
"""
ATTEMPTS = """
SELECT step_id, status, retry, sum(attempts)::bigint AS n FROM analytics_step_attempts
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  GROUP BY 1, 2, 3
"""
TIMES = """
SELECT step_id, kind, bucket, sum(attempts)::bigint AS n FROM analytics_step_times
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  GROUP BY 1, 2, 3
"""
CRITICAL = """
SELECT step_id, sum(executions)::bigint AS n FROM analytics_step_critical
WHERE workflow_id = $1 AND hour >= $2 AND hour < $3
  AND ($4::text[] IS NULL OR tenant_id = ANY($4))
  AND ($5::int IS NULL OR workflow_version = $5)
  GROUP BY 1
"""
# The increase of each counter per hour: the difference between a worker's consecutive
# samples (a restarted worker's counter starts again from zero: its value is the increase).
COUNTERS = """
WITH steps AS (
    SELECT sampled_at, name, value,
        value - lag(value) OVER (PARTITION BY worker, name ORDER BY sampled_at) AS delta
    FROM metric_samples
    WHERE sampled_at >= $1::timestamptz - interval '1 hour' AND sampled_at < $2::timestamptz
)
SELECT date_trunc('hour', sampled_at, 'UTC') AS hour, name,
    sum(CASE WHEN delta IS NULL THEN 0 WHEN delta < 0 THEN value ELSE delta END) AS n
FROM steps WHERE sampled_at >= $1::timestamptz GROUP BY 1, 2 ORDER BY 1
"""
WORKFLOWS = """
SELECT DISTINCT workflow_id FROM analytics_executions
WHERE hour >= $1 AND ($2::text[] IS NULL OR tenant_id = ANY($2)) ORDER BY 1
"""
FAILED = ("failed", "timed_out")


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None = None

    @classmethod
    def of(cls, counts: dict[int, int]) -> Percentiles:
        return cls(*(percentile(counts, f) for f in (0.5, 0.95, 0.99)))


@dataclass(frozen=True)
class VersionFigures:
    version: int
    outcomes: dict[str, int]
    duration_ms: Percentiles  # of completed executions

    @property
    def executions(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True)
class StepFigures:
    step_id: str
    attempts: int
    failures: int  # failed or timed out
    retries: int  # attempts after the first
    duration_ms: Percentiles  # completed attempts, started to finished
    wait_ms: Percentiles  # released to started: waiting for a worker
    critical: int  # completed executions in which it was on the critical path

    @property
    def failure_rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0


@dataclass(frozen=True)
class WorkflowAnalytics:
    workflow_id: str
    since: datetime
    until: datetime
    versions: list[VersionFigures]
    steps: list[StepFigures]
    throughput: list[tuple[datetime, dict[str, int]]]  # executions started, by hour
    counters: list[tuple[datetime, dict[str, float]]] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(v.outcomes.get("completed", 0) for v in self.versions)

    def as_dict(self) -> dict[str, Any]:
        def percentiles(p: Percentiles) -> dict[str, float | None]:
            return {"p50": p.p50, "p95": p.p95, "p99": p.p99}

        return {
            "workflow_id": self.workflow_id,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "versions": [
                {
                    "version": v.version,
                    "executions": v.executions,
                    "outcomes": v.outcomes,
                    "duration_ms": percentiles(v.duration_ms),
                }
                for v in self.versions
            ],
            "steps": [
                {
                    "step_id": s.step_id,
                    "attempts": s.attempts,
                    "failures": s.failures,
                    "failure_rate": s.failure_rate,
                    "retries": s.retries,
                    "duration_ms": percentiles(s.duration_ms),
                    "wait_ms": percentiles(s.wait_ms),
                    "critical_path": s.critical,
                }
                for s in self.steps
            ],
            "throughput": [{"hour": h.isoformat(), **counts} for h, counts in self.throughput],
            "counters": [{"hour": h.isoformat(), **counts} for h, counts in self.counters],
        }


def hour_floor(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


async def workflow_analytics(
    connection: asyncpg.Connection,
    workflow_id: str,
    since: datetime,
    until: datetime | None = None,
    tenant_ids: Sequence[str] | None = None,
    version: int | None = None,
) -> WorkflowAnalytics:
    until = until or datetime.now(UTC) + timedelta(hours=1)
    tenants = None if tenant_ids is None else list(tenant_ids)
    arguments = (workflow_id, hour_floor(since), hour_floor(until), tenants, version)
    outcomes: dict[int, dict[str, int]] = defaultdict(dict)
    for row in await connection.fetch(OUTCOMES, *arguments):
        outcomes[row["workflow_version"]][row["status"]] = row["n"]
    durations: dict[int, dict[int, int]] = defaultdict(dict)
    for row in await connection.fetch(DURATIONS, *arguments):
        durations[row["workflow_version"]][row["bucket"]] = row["n"]
    versions = [
        VersionFigures(v, dict(sorted(outcomes[v].items())), Percentiles.of(durations[v]))
        for v in sorted(outcomes)
    ]
    throughput: dict[datetime, dict[str, int]] = defaultdict(dict)
    for row in await connection.fetch(THROUGHPUT, *arguments):
        throughput[row["hour"]][row["status"]] = row["n"]
    return WorkflowAnalytics(
        workflow_id,
        hour_floor(since),
        hour_floor(until),
        versions,
        await _steps(connection, arguments),
        sorted(throughput.items()),
    )


async def _steps(connection: asyncpg.Connection, arguments: tuple[Any, ...]) -> list[StepFigures]:
    attempts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in await connection.fetch(ATTEMPTS, *arguments):
        counts = attempts[row["step_id"]]
        counts["attempts"] += row["n"]
        counts["failures"] += row["n"] if row["status"] in FAILED else 0
        counts["retries"] += row["n"] if row["retry"] else 0
    times: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for row in await connection.fetch(TIMES, *arguments):
        times[(row["step_id"], row["kind"])][row["bucket"]] = row["n"]
    critical = {row["step_id"]: row["n"] for row in await connection.fetch(CRITICAL, *arguments)}
    return [
        StepFigures(
            step,
            counts["attempts"],
            counts["failures"],
            counts["retries"],
            Percentiles.of(times[(step, "duration")]),
            Percentiles.of(times[(step, "wait")]),
            critical.get(step, 0),
        )
        for step, counts in sorted(attempts.items())
    ]


async def counters_over_time(
    connection: asyncpg.Connection, since: datetime, until: datetime | None = None
) -> list[tuple[datetime, dict[str, float]]]:
    """Each sampled counter's increase per hour, over every worker (not per tenant: the
    workers' counters carry no tenant)."""
    until = until or datetime.now(UTC) + timedelta(hours=1)
    hours: dict[datetime, dict[str, float]] = defaultdict(dict)
    for row in await connection.fetch(COUNTERS, hour_floor(since), hour_floor(until)):
        hours[row["hour"]][row["name"]] = row["n"]
    return sorted(hours.items())


async def analysed_workflows(
    connection: asyncpg.Connection, since: datetime, tenant_ids: Sequence[str] | None = None
) -> list[str]:
    tenants = None if tenant_ids is None else list(tenant_ids)
    return [row[0] for row in await connection.fetch(WORKFLOWS, hour_floor(since), tenants)]


def hit_rate(counts: dict[str, float], cache: str) -> float | None:
    hits, misses = counts.get(f"cache.{cache}.hit", 0.0), counts.get(f"cache.{cache}.miss", 0.0)
    return hits / (hits + misses) if hits + misses else None
