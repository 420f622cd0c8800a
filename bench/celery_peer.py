"""The engine beside Celery on the same machine, in one sitting, runs alternated.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/celery_peer.py [--executions 3000] [--rounds 2]

The same work on both: N executions of the 4-step no-op diamond. Celery runs it as the
canvas chain(step, group(step, step), step) (a chord: step 4 waits for 2 and 3) on the
local Redis (its own database number, flushed before and after), one worker with the
prefork pool and concurrency 2, the way Celery is usually deployed. The engine runs one
worker on the local Kafka (bench/pipeline.py's saturation phase), in each of its layouts
(--layouts): one process, or split in two processes by role (a coordinator, and an
executor and persister), as Celery's prefork pool is a main process and two children.
Printed per run: steps/s and worker CPU per step (from /proc, every process of the worker
or Celery's pool); at the end, the engine/Celery ratio of each. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from celery import chain, group
from pipeline import (  # bench/ is on sys.path
    cpu_seconds,
    fresh_engine,
    saturation,
    start_workers,
)

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import wait_until_ready
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import delete_topics_with_prefix

HERE = Path(__file__).resolve().parent
REDIS_DB = 15  # Celery's broker and results, apart from the engine's keys


def celery_url(settings: Settings) -> str:
    return settings.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"


def pool_pids(pid: int) -> list[int]:
    """The worker and its prefork children."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def run_celery(settings: Settings, executions: int) -> tuple[float, float]:
    url = celery_url(settings)
    redis.Redis.from_url(url).flushdb()
    env = {**os.environ, "CELERY_PEER_URL": url, "PYTHONPATH": str(HERE)}
    command = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker"]
    options = ["-P", "prefork", "-c", "2", "--loglevel", "warning", "--without-gossip"]
    worker = subprocess.Popen(  # noqa: S603 - our interpreter, Celery's own command
        [*command, *options, "--without-mingle"],
        env=env,
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    os.environ["CELERY_PEER_URL"] = url
    from celery_tasks import app, step

    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not start")
        pids = pool_pids(worker.pid)
        cpu_before = cpu_seconds(pids)
        started = time.perf_counter()
        results = [
            chain(step.s(n), group(step.s(), step.s()), step.s()).apply_async()
            for n in range(executions)
        ]
        for result in results:
            result.get(timeout=600)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pids) - cpu_before
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        redis.Redis.from_url(url).flushdb()
    steps = executions * 4
    print(
        f"celery: {executions} diamonds, {elapsed:.1f} s, {steps / elapsed:,.0f} steps/s, "
        f"worker CPU {cpu / steps * 1e6:.0f} us per step (prefork -c 2, Redis)"
    )
    return steps / elapsed, cpu / steps * 1e6


async def run_engine(executions: int, split: bool) -> tuple[float, float]:
    env, settings, workdir = await fresh_engine()
    workers = start_workers(env, workdir, 1, split=split)
    try:
        await wait_until_ready(settings, workers, timeout=120)
        async with WorkflowClient(settings) as client:
            pids = [worker.process.pid for worker in workers]
            before = cpu_seconds(pids)
            started = time.perf_counter()
            await saturation(settings, client, executions, {w.name: w.process.pid for w in workers})
            # saturation() prints its own line; the CPU here is the same window.
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(pids) - before
    finally:
        for worker in workers:
            worker.stop()
        await delete_topics_with_prefix(kafka_access(settings), settings.topic_prefix)
    steps = executions * 4
    return steps / elapsed, cpu / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--layouts",
        default="one,split",
        help="the engine's layouts, alternated: one (one process) and split (a coordinator "
        "process and an executor and persister process)",
    )
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    settings = Settings.from_env()
    print(f"{os.cpu_count()} cores shared with Kafka, PostgreSQL and Redis")
    runs: list[tuple[str, tuple[float, float], tuple[float, float]]] = []
    for _ in range(args.rounds):
        engine = {}
        for layout in layouts:
            print(f"engine, layout {layout}:")
            engine[layout] = asyncio.run(run_engine(args.executions, split=layout == "split"))
        celery = run_celery(settings, args.executions)
        runs += [(layout, engine[layout], celery) for layout in layouts]
    for layout, (e_rate, e_cpu), (c_rate, c_cpu) in runs:
        print(
            f"engine ({layout})/celery: steps/s {e_rate / c_rate:.2f}x, "
            f"CPU per step {c_cpu / e_cpu:.2f}x less"
        )


if __name__ == "__main__":
    main()
    # Celery's result objects unsubscribe from Redis in __del__, which fails noisily at
    # interpreter exit; its database is flushed and its worker stopped by now.
    sys.stdout.flush()
    os._exit(0)
