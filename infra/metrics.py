"""Prometheus metrics of one worker process, and the loopback HTTP endpoint that serves
them (`/metrics`) with the worker's readiness (`/healthz`).

Conventions: names start with `stepstream_`, durations are in seconds, counters end in
`_total`, and no label carries a tenant, a user or an execution (unbounded cardinality).
Counting is in process: a cache lookup that hits the in-process tier costs no round trip.
A worker is one process, so the metrics are process-wide (`METRICS`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.step_duration = Histogram(
            "stepstream_step_duration_seconds",
            "How long a step attempt ran, as its worker reported it.",
            ["outcome"],
            buckets=SECONDS,
            registry=registry,
        )
        self.scheduling_delay = Histogram(
            "stepstream_scheduling_delay_seconds",
            "From a step's release (its dependencies finished) to its worker starting it.",
            buckets=SECONDS,
            registry=registry,
        )
        self.steps = Counter(
            "stepstream_steps_total",
            "The coordinator's decisions on step attempts (completed, failed, timed_out, "
            "ignored reports) and skips, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "stepstream_step_retries_total", "Retries scheduled.", registry=registry
        )
        self.executions = Counter(
            "stepstream_executions_total",
            "Executions ended, by outcome (completed, failed, cancelled, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.parallel_executions = Counter(
            "stepstream_parallel_executions_total",
            "Executions ended in which two or more steps were outstanding at once.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "stepstream_executions_in_flight",
            "Executions with outstanding steps in this worker's partitions.",
            registry=registry,
        )
        self.cache_requests = Counter(
            "stepstream_cache_requests_total",
            "Cache lookups, by cache and result (hit, miss, bypass).",
            ["cache", "result"],
            registry=registry,
        )
        self.rate_limit_decisions = Counter(
            "stepstream_rate_limit_decisions_total",
            "Rate-limit decisions on workflow starts, by scope and decision.",
            ["scope", "decision"],
            registry=registry,
        )
        self.query_duration = Histogram(
            "stepstream_db_query_duration_seconds",
            "PostgreSQL statements, by query.",
            ["query"],
            buckets=SECONDS,
            registry=registry,
        )
        self.dead_letters = Counter(
            "stepstream_dead_letters_total",
            "Records sent to the dead-letter topic, by the topic they came from.",
            ["source_topic"],
            registry=registry,
        )
        self.watchdog_resumes = Counter(
            "stepstream_watchdog_resumes_total",
            "Executions the watchdog found stalled (no progress past their steps' timeouts"
            " plus the margin) and announced again.",
            registry=registry,
        )
        self.checkpoints_retired = Counter(
            "stepstream_checkpoints_retired_total",
            "Ended executions whose checkpoints left the tables, WORKFLOW_RETENTION_SECONDS"
            " after their end.",
            registry=registry,
        )
        self.start_resumes = Counter(
            "stepstream_start_resumes_total",
            "Start requests with no outcome past WORKFLOW_WATCHDOG_MARGIN_MS that the start"
            " watchdog published again.",
            registry=registry,
        )
        self.partition_stalls = Counter(
            "stepstream_partition_stalls_total",
            "Partitions the progress guard found stalled (assigned, records waiting, no"
            " commit for STEPSTREAM_STALL_SECONDS), by group and by how it healed them.",
            ["group", "heal"],
            registry=registry,
        )
        self.timers_pending = Gauge(
            "stepstream_timers_pending",
            "Wait steps' timers armed in this worker's partitions (the due-time index).",
            registry=registry,
        )
        self.events = Counter(
            "stepstream_events_total",
            "Events from outside, by what the correlator did with them: matched (went to a"
            " wait), held (no wait yet), duplicate (an id seen before), refused (the wait"
            " had ended; offered again), unmatched (held past its time to live).",
            ["outcome"],
            registry=registry,
        )
        self.events_held = Gauge(
            "stepstream_events_held",
            "Events held in this worker's partitions for waits that have not begun.",
            registry=registry,
        )
        self.event_latency = Histogram(
            "stepstream_event_delivery_seconds",
            "From an event's sending to its delivery to the waiting execution.",
            buckets=SECONDS,
            registry=registry,
        )
        self.human_tasks_open = Gauge(
            "stepstream_human_tasks_open",
            "Human tasks open in PostgreSQL, as the persister last counted them (after each"
            " batch that opened or closed one).",
            registry=registry,
        )
        self.human_tasks = Counter(
            "stepstream_human_tasks_total",
            "Human tasks by how the coordinator saw them: opened, answered, refused (an"
            " answer that did not fit: the task not open, or the form not matched).",
            ["outcome"],
            registry=registry,
        )
        self.timer_lateness = Histogram(
            "stepstream_timer_lateness_seconds",
            "How long after its due time a wait step's timer fired.",
            buckets=SECONDS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "stepstream_consumer_lag",
            "Records not yet consumed by this worker's members of each consumer group.",
            ["group"],
            registry=registry,
        )

    @contextlib.contextmanager
    def timed_query(self, query: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.query_duration.labels(query).observe(time.perf_counter() - started)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


METRICS = Metrics()


async def serve(
    port: int, ready: Callable[[], bool], metrics: Metrics = METRICS, host: str = "127.0.0.1"
) -> tuple[web.AppRunner, int]:
    """Serve `/metrics` and `/healthz` on the running loop; returns the runner (to clean
    up) and the port (0 picks a free one)."""

    async def scrape(request: web.Request) -> web.Response:
        body = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: partitions not assigned or recovered\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # noqa: SLF001 - the only way to learn the port picked for 0
    sockets = getattr(server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
