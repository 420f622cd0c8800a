"""Samples this worker's cache and rate-limit counters into PostgreSQL (metric_samples)
every STEPSTREAM_METRICS_SAMPLE_SECONDS, so the analytics can chart them over time:
Prometheus has them too, but only for as long as it keeps them and only where one runs.
A sample lost to a database outage is only a coarser chart: it is not retried."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from stepstream.infra.metrics import METRICS
from stepstream.streams.engine import Engine

log = logging.getLogger(__name__)

COUNTERS = {
    "stepstream_cache_requests": ("cache", "result"),
    "stepstream_rate_limit_decisions": ("scope", "decision"),
}
SHORT = {"stepstream_cache_requests": "cache", "stepstream_rate_limit_decisions": "rate_limit"}
INSERT = "INSERT INTO metric_samples (worker, sampled_at, name, value) VALUES ($1, $2, $3, $4)"


def sample() -> dict[str, float]:
    """The counters by short name: cache.ai.hit, rate_limit.tenant.rejected, ..."""
    values = {}
    for metric in METRICS.registry.collect():
        labels = COUNTERS.get(metric.name)
        if labels is None:
            continue
        for point in metric.samples:
            if point.name.endswith("_total"):
                parts = [point.labels[label] for label in labels]
                values[".".join((SHORT[metric.name], *parts))] = point.value
    return values


async def record(pool: asyncpg.Pool, worker: str, at: datetime) -> None:
    rows = [(worker, at, name, value) for name, value in sorted(sample().items())]
    if rows:
        async with pool.acquire() as connection:
            await connection.executemany(INSERT, rows)


def install(engine: Engine, database: Callable[[], Awaitable[asyncpg.Pool]]) -> None:
    worker = engine.options.name

    @engine.app.timer(interval=engine.settings.metrics_sample_seconds)  # type: ignore[untyped-decorator]
    async def sample_counters() -> None:
        try:
            await record(await database(), worker, datetime.now(UTC))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("counters not sampled: %s: %s", type(error).__name__, error)
