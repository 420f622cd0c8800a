"""The seed's figures from added-up samples, JSON log lines, and /healthz's answer."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from stepstream.client.figures import add_up, seed_figures
from stepstream.infra.metrics import Metrics, serve
from stepstream.streams.log_format import JsonFormatter


def test_the_four_figures_are_computed_from_every_worker_together() -> None:
    first, second = Metrics(), Metrics()
    first.cache_requests.labels("definitions", "hit").inc(9)
    second.cache_requests.labels("definitions", "miss").inc(1)
    first.cache_requests.labels("ai", "hit").inc(1)
    second.cache_requests.labels("ai", "miss").inc(3)
    first.executions.labels("completed").inc(3)
    second.executions.labels("failed").inc(1)
    second.executions.labels("rejected").inc(5)  # never ran: not in the parallel rate
    first.parallel_executions.inc(2)
    first.rate_limit_decisions.labels("all", "allowed").inc(90)
    second.rate_limit_decisions.labels("user", "rejected").inc(6)
    second.rate_limit_decisions.labels("tenant", "deferred").inc(4)
    first.query_duration.labels("persist_batch").observe(0.01)
    second.query_duration.labels("create_request").observe(0.03)
    samples = add_up([first.exposition().decode(), second.exposition().decode()])
    shown = {f.name: (f.shown(), f.target, f.met) for f in seed_figures(samples)}
    assert shown == {
        "cache hit rate: definitions": ("90.0%", "> 90%", False),
        "cache hit rate: ai": ("25.0%", "> 70%", False),
        "parallel execution rate": ("50.0%", "> 50%", False),
        "rate-limit hits": ("10.0%", "< 5%", False),
        "average query time": ("20.0 ms", "< 50 ms", True),
    }


def test_nothing_counted_yet_is_no_figure_rather_than_zero() -> None:
    figures = seed_figures(add_up([Metrics().exposition().decode()]))
    assert [(f.value, f.met, f.shown()) for f in figures] == [(None, None, "-")] * 5


def test_a_json_log_line_carries_the_execution_it_is_about() -> None:
    record = logging.LogRecord(
        "stepstream.x", logging.WARNING, "f", 1, "dead-lettered %s", ("e",), None
    )
    record.execution_id = "order-17"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "dead-lettered e" and line["execution_id"] == "order-17"
    assert (line["level"], line["logger"]) == ("WARNING", "stepstream.x")
    assert "step_id" not in line


async def test_healthz_says_not_ready_until_the_worker_is() -> None:
    import asyncio

    ready = False
    runner, port = await serve(0, lambda: ready, Metrics())
    try:

        def status() -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    return int(r.status)
            except urllib.error.HTTPError as error:
                return error.code

        assert await asyncio.to_thread(status) == 503
        ready = True
        assert await asyncio.to_thread(status) == 200
    finally:
        await runner.cleanup()
