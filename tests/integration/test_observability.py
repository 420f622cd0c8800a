"""A worker as a monitoring system sees it: `/metrics` and `/healthz` on its loopback
port (announced, so `stepstream workers` and `stats` find it), every metric the shipped
Grafana dashboard and Prometheus alert rules name, the seed's four figures in `stats`,
and JSON log lines. Real broker, PostgreSQL and Redis; a real worker process."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepstream.client import WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.workers import (
    NOOP_DIAMOND,
    WorkerProcess,
    cli,
    engine_env,
    prepare,
    running_worker,
)
from tests.waiting import repeat_until

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "monitoring" / "grafana-dashboard.json", ROOT / "monitoring" / "alerts.yml"]


@pytest.fixture(scope="module")
def observed(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str], WorkerProcess]]:
    env = engine_env(settings, f"test-{run_token}-observed", STEPSTREAM_LOG_FORMAT="json")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, NOOP_DIAMOND))
    workdir = tmp_path_factory.mktemp("observed")
    with running_worker(engine, env, "observed-w1", workdir) as worker:
        yield engine, env, worker


def metrics_url(env: dict[str, str]) -> str:
    listed = cli(
        env,
        *("workers", "-o", "json"),
        until=lambda r: (
            r.returncode == 0
            and any(w["worker"] == "observed-w1" and w["metrics_url"] for w in json.loads(r.stdout))
        ),
    )
    (worker,) = [w for w in json.loads(listed.stdout) if w["worker"] == "observed-w1"]
    return str(worker["metrics_url"])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def run_diamonds(settings: Settings, count: int) -> None:
    async def run() -> None:
        async with WorkflowClient(settings) as client:
            ids = [
                await client.start_workflow("noop-diamond", {}, "t", f"u-{n}") for n in range(count)
            ]
            for execution_id in ids:
                assert (await client.wait_for(execution_id, timeout=60)).status == "completed"

    asyncio.run(run())


def families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_worker_serves_its_metrics_and_health_on_its_loopback_port(
    observed: tuple[Settings, dict[str, str], WorkerProcess],
) -> None:
    settings, env, _ = observed
    url = metrics_url(env)
    assert url.startswith("http://127.0.0.1:")
    assert get(url.replace("/metrics", "/healthz")) == (200, "ready\n")
    run_diamonds(settings, 5)
    status, text = get(url)
    assert status == 200
    assert sample(text, "stepstream_steps_total", outcome="completed") >= 20
    assert sample(text, "stepstream_executions_total", outcome="completed") >= 5
    assert sample(text, "stepstream_parallel_executions_total") >= 5  # b and c together
    assert sample(text, "stepstream_scheduling_delay_seconds_count") >= 20
    assert sample(text, "stepstream_cache_requests_total", cache="definitions", result="hit") >= 5
    assert not re.search(r'(tenant|user|execution)(_id)?="', text)  # bounded labels only
    prefix = settings.topic_prefix
    groups = [f"{prefix}-{role}" for role in ("engine", "executor", "persister")]
    _, text = repeat_until(  # each group is measured every 5 s
        lambda: get(url),
        lambda got: all(f'stepstream_consumer_lag{{group="{g}"}}' in got[1] for g in groups),
        30,
    )
    assert all(f'stepstream_consumer_lag{{group="{g}"}}' in text for g in groups), text


def test_every_metric_the_dashboard_and_alerts_name_exists_on_a_worker(
    observed: tuple[Settings, dict[str, str], WorkerProcess],
) -> None:
    _, env, _ = observed
    _, text = get(metrics_url(env))
    exposed = families(text)
    named: set[str] = set()
    for path in SHIPPED:
        named |= set(re.findall(r"stepstream_[a-z_]+", path.read_text()))
    assert named, "the dashboard and the alert rules name no metric"
    json.loads(SHIPPED[0].read_text())  # the dashboard is valid JSON
    missing = sorted(
        name
        for name in named
        if re.sub(r"_(bucket|sum|count)$", "", name) not in exposed and name not in exposed
    )
    assert missing == [], f"named but not exposed: {missing}"


def test_stats_shows_the_seeds_four_figures_beside_their_targets(
    observed: tuple[Settings, dict[str, str], WorkerProcess],
) -> None:
    settings, env, _ = observed
    run_diamonds(settings, 3)
    result = cli(env, "stats", "-o", "json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["workers"] == ["observed-w1"]
    figures = {figure["name"]: figure for figure in answer["figures"]}
    assert list(figures) == [
        "cache hit rate: definitions",
        "cache hit rate: ai",
        "parallel execution rate",
        "rate-limit hits",
        "average query time",
    ]
    parallel = figures["parallel execution rate"]
    # Every diamond ran b and c together; the readiness probe's one-step workflow did not.
    assert (parallel["target"], parallel["met"]) == ("> 50%", True)
    assert 0.8 <= parallel["value"] < 1.0
    assert figures["cache hit rate: definitions"]["value"] > 0.5
    assert figures["average query time"]["value"] is not None  # the persister's batches
    table = cli(env, "stats")
    row = next(line for line in table.stdout.splitlines() if "parallel execution" in line)
    assert "> 50%" in row and "ok" in row


def test_json_log_lines(observed: tuple[Settings, dict[str, str], WorkerProcess]) -> None:
    _, _, worker = observed
    lines = [line for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    assert len(lines) > 5
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in parsed)
    assert any("ready" in entry["message"] for entry in parsed)
