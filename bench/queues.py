"""Queue steps beside built-in steps, in one sitting, runs alternated.

    .venv/bin/python bench/queues.py [--executions 2000] [--rounds 2]

The same 4-step no-op diamond twice: once run by the built-in executor, once with every
step on a task queue served by examples/external_worker.py (aiokafka + fastavro, a
process of its own). One engine worker either way. Prints steps/s and the CPU per step
of the engine worker and of the external worker (from /proc). Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

from pipeline import cpu_seconds, fresh_engine, start_and_wait  # bench/ is on sys.path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import declare_topics, delete_topics_with_prefix
from stepstream.workflows import build_definition

ROOT = Path(__file__).resolve().parents[1]
QUEUED = build_definition(
    {
        "id": "diamond-queued",
        "version": 1,
        "steps": [
            {"id": "step-1", "type": "REMOTE", "queue": "bench"},
            {"id": "step-2", "type": "REMOTE", "queue": "bench", "dependsOn": ["step-1"]},
            {"id": "step-3", "type": "REMOTE", "queue": "bench", "dependsOn": ["step-1"]},
            {"id": "step-4", "type": "REMOTE", "queue": "bench", "dependsOn": ["step-2", "step-3"]},
        ],
    }
)


async def run(
    settings: Settings, workflow_id: str, executions: int, pids: list[int]
) -> tuple[float, float]:
    async with WorkflowClient(settings) as client:
        cpu_before = cpu_seconds(pids)
        _, elapsed = await start_and_wait(client, workflow_id, executions)
    steps = executions * 4
    return steps / elapsed, (cpu_seconds(pids) - cpu_before) / steps * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    env, settings, workdir = await fresh_engine()
    await declare_topics(kafka_access(settings), settings, queues=["bench"])
    await prepare(settings, QUEUED)
    worker = WorkerProcess("queues-bench", env, workdir)
    external = subprocess.Popen(  # noqa: S603 - our own example
        [
            *(sys.executable, ROOT / "examples" / "external_worker.py", "--queue", "bench"),
            *("--schemas", str(ROOT / "schemas"), "--name", "bench-external"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        await wait_until_ready(settings, [worker], timeout=120)
        print(f"{os.cpu_count()} cores shared with Kafka, PostgreSQL and Redis")
        for round_number in range(1, args.rounds + 1):
            for workflow_id, label in (("diamond-noop", "built-in"), (QUEUED.id, "queue")):
                pids = [worker.process.pid, external.pid]
                rate, cpu = await run(settings, workflow_id, args.executions, pids)
                print(
                    f"round {round_number} {label:<8}: {args.executions} diamonds, "
                    f"{rate:,.0f} steps/s, CPU {cpu:.0f} us per step (engine worker and "
                    "external worker together)"
                )
    finally:
        external.terminate()
        external.wait(timeout=30)
        worker.stop()
        await delete_topics_with_prefix(kafka_access(settings), settings.topic_prefix)


if __name__ == "__main__":
    asyncio.run(main())
