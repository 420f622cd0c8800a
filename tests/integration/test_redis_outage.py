"""Redis stopped mid-run: the caches are bypassed and every workflow still completes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.workflows import parse_definition
from tests.integration.workers import (
    WorkerProcess,
    engine_env,
    own_property,
    prepare,
    wait_until_ready,
)

REFERENCE = Path(__file__).resolve().parents[2] / "demo" / "examples" / "maintenance-request.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis(redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield process, f"redis://127.0.0.1:{port}/0"
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


async def run_batch(client: WorkflowClient, place: dict[str, int], label: str) -> list[str]:
    ids = [
        await client.start_workflow(
            "maintenance-request",
            {**place, "title": f"Leak number {n} ({label})"},
            "tenant-outage",
            "user-1",
        )
        for n in range(8)
    ]
    outcomes = await asyncio.gather(*(client.wait_for(i, timeout=120) for i in ids))
    assert [o.status for o in outcomes] == ["completed"] * 8, [o.record for o in outcomes]
    return ids


def test_workflows_complete_when_redis_stops_mid_run(
    settings: Settings,
    kafka_bootstrap: str,
    schema_database_url: str,
    run_token: str,
    private_redis: tuple[subprocess.Popen[bytes], str],
    tmp_path: Path,
) -> None:
    redis_process, redis_url = private_redis
    env = engine_env(
        settings, f"test-{run_token}-outage", DATABASE_URL=schema_database_url, REDIS_URL=redis_url
    )
    engine = Settings.from_env(env)
    place = asyncio.run(own_property(schema_database_url))
    asyncio.run(prepare(engine, parse_definition(REFERENCE.read_text())))
    worker = WorkerProcess("outage-w1", env, tmp_path)
    try:
        asyncio.run(wait_until_ready(engine, [worker], 120))

        async def scenario() -> int:
            async with WorkflowClient(engine) as client:
                await run_batch(client, place, "before")
                cache = aioredis.from_url(redis_url)
                entries = len([k async for k in cache.scan_iter(match="*:cache:ai:*")])
                await cache.aclose()
                redis_process.kill()  # Redis dies between two batches of work
                redis_process.wait(timeout=10)
                await run_batch(client, place, "after")
                return entries

        assert asyncio.run(scenario()) == 8  # the cache was really in use before the outage
        assert worker.process.poll() is None
        assert "Redis unavailable, bypassing it" in worker.log_path.read_text()
    finally:
        worker.stop()
