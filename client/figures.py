"""The seed's four figures, from the workers' own metrics: each live worker (found by its
announcement) is scraped, and the samples are added up."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from stepstream.streams.announcements import Announcement

Samples = Mapping[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None  # None: nothing counted yet
    target: str
    met: bool | None

    def shown(self) -> str:
        if self.value is None:
            return "-"
        if self.target.endswith("ms"):
            return f"{self.value * 1000:.1f} ms"
        return f"{self.value:.1%}"


async def scrape(workers: Iterable[Announcement], timeout: float = 5.0) -> dict[str, str]:
    """Each worker's metrics text, by worker name; a worker that does not answer is left
    out (it may have just died)."""
    texts: dict[str, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(worker: Announcement) -> None:
            if not worker.metrics_url:
                return
            try:
                async with session.get(worker.metrics_url) as response:
                    if response.status == 200:
                        texts[worker.worker] = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                return

        await asyncio.gather(*(one(worker) for worker in workers))
    return texts


def add_up(texts: Iterable[str]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, summed over the workers, keyed by name and labels."""
    total: dict[tuple[str, frozenset[tuple[str, str]]], float] = defaultdict(float)
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                total[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return dict(total)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def seed_figures(samples: Samples) -> list[Figure]:
    """Cache hit rates (> 90% for definitions, > 70% for AI responses), the parallel
    execution rate (> 50%), rate-limit hits (alert above 5%), average query time
    (< 50 ms)."""
    figures = []
    for cache, target in (("definitions", 0.9), ("ai", 0.7)):
        requests = "stepstream_cache_requests_total"
        hits = _sum(samples, requests, cache=cache, result="hit")
        value = _ratio(hits, _sum(samples, requests, cache=cache))
        met = None if value is None else value > target
        figures.append(Figure(f"cache hit rate: {cache}", value, f"> {target:.0%}", met))
    ended = _sum(samples, "stepstream_executions_total") - _sum(
        samples, "stepstream_executions_total", outcome="rejected"
    )
    parallel = _ratio(_sum(samples, "stepstream_parallel_executions_total"), ended)
    met = None if parallel is None else parallel > 0.5
    figures.append(Figure("parallel execution rate", parallel, "> 50%", met))
    decisions = "stepstream_rate_limit_decisions_total"
    refused = _sum(samples, decisions, decision="rejected") + _sum(
        samples, decisions, decision="deferred"
    )
    refusals = _ratio(refused, _sum(samples, decisions))
    met = None if refusals is None else refusals < 0.05
    figures.append(Figure("rate-limit hits", refusals, "< 5%", met))
    query = "stepstream_db_query_duration_seconds"
    average = _ratio(_sum(samples, f"{query}_sum"), _sum(samples, f"{query}_count"))
    met = None if average is None else average < 0.05
    figures.append(Figure("average query time", average, "< 50 ms", met))
    return figures
