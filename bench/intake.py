"""Intake throughput with rate limiting on and off, measured in one run.

    .venv/bin/python bench/intake.py [--starts 3000]

Each phase runs its own worker and topic prefix; the limits are high enough that nothing
is refused, so the difference is the cost of counting. Throughput is start requests
produced -> WorkflowStarted events on the executions topic. Prints numbers only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition

from stepstream.client.watch import reader
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import build_definition

HOLD = build_definition(
    {
        "id": "hold",
        "steps": [
            {"id": "hold", "type": "sleep", "config": {"seconds": 600}, "timeoutMs": 700_000}
        ],
    }
)


async def count_started(settings: Settings, expected: int, deadline: float) -> float:
    """Seconds until `expected` WorkflowStarted events are on the executions topic."""
    topic = TopicNames.for_prefix(settings.topic_prefix).executions
    consumer = reader(settings)
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer.assign(partitions)
    seen = 0
    try:
        while seen < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen += len(records)
        return time.monotonic()
    finally:
        await consumer.stop()


async def phase(rate_limited: bool, starts: int) -> float:
    prefix = f"bench-intake-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **Settings.from_env().as_environment(),
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "WORKFLOW_RATE_LIMIT_ENABLED": str(rate_limited).lower(),
        "WORKFLOW_RATE_LIMIT_POINTS": "1000000",
        "WORKFLOW_RATE_LIMIT_TENANT_POINTS": "1000000",
    }
    settings = Settings.from_env(env)
    await prepare(settings, HOLD)
    worker = WorkerProcess(
        "bench-intake", env, Path(tempfile.mkdtemp(prefix="stepstream-bench-", dir="/var/tmp"))
    )
    try:
        await wait_until_ready(settings, [worker], timeout=120)
        async with WorkflowClient(settings, follow_outcomes=False) as client:
            counting = asyncio.create_task(
                count_started(settings, starts + 1, time.monotonic() + 600)
            )  # +1: the probe
            started = time.monotonic()
            for n in range(starts):
                await client.start_workflow("hold", {}, f"tenant-{n % 20}", f"user-{n % 500}")
            await client.flush()
            finished = await counting
        rate = starts / (finished - started)
        print(
            f"rate limiting {'on ' if rate_limited else 'off'}: {starts} starts in "
            f"{finished - started:.1f} s = {rate:,.0f} starts/s"
        )
        return rate
    finally:
        worker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--starts", type=int, default=3_000)
    args = parser.parse_args()
    off = await phase(False, args.starts)
    on = await phase(True, args.starts)
    print(f"on / off = {on / off:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
