"""Celery beside the engine, for bench/peers.py; runs in the peers' virtualenv.

    .venv-peers/bin/python bench/peer_celery.py [--executions 3000] [--latency-runs 100]

The diamond is the canvas chain(step, group(step, step), step) (a chord: step 4 waits
for 2 and 3) on the project's Redis (REDIS_URL's server, database 15, flushed before and
after), one worker with the prefork pool and concurrency 2, the way Celery is usually
deployed. Counted: the worker and its two children, Redis, and this client.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import redis
from peer_harness import arguments, describe, measure, pids_of

HERE = Path(__file__).resolve().parent
REDIS_DB = 15  # Celery's broker and results, apart from the engine's keys


class CeleryDiamonds:
    def __init__(self, worker: subprocess.Popen[bytes]) -> None:
        self.worker = worker

    def processes(self) -> dict[str, list[int]]:
        pid = self.worker.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {
            "worker pool": [pid, *map(int, children)],
            "redis": pids_of("redis-server"),
            "client": [os.getpid()],
        }

    async def run(self, executions: int, seconds: float = 0.0) -> None:
        from celery import chain, group
        from celery_tasks import step

        each = step.s(seconds=seconds)
        results = [
            chain(step.s(n, seconds=seconds), group(each, each), each).apply_async()
            for n in range(executions)
        ]
        for result in results:
            result.get(timeout=600)


def start_worker(url: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker"]
    options = ["-P", "prefork", "-c", "2", "--loglevel", "warning", "--without-gossip"]
    return subprocess.Popen(  # noqa: S603 - our interpreter, Celery's own command
        [*command, *options, "--without-mingle"],
        env={**os.environ, "CELERY_PEER_URL": url, "PYTHONPATH": str(HERE)},
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def main() -> None:
    args = arguments(__doc__)
    url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    os.environ["CELERY_PEER_URL"] = url
    redis.Redis.from_url(url).flushdb()
    worker = start_worker(url)
    from celery_tasks import app

    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not start")
        diamonds = CeleryDiamonds(worker)
        figures = asyncio.run(
            measure("celery", version("celery"), diamonds, args.executions, args.latency_runs)
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        redis.Redis.from_url(url).flushdb()
    print(describe(figures))
    print(figures.line())
    # Celery's result objects unsubscribe from Redis in __del__, which fails noisily at
    # interpreter exit; its database is flushed and its worker stopped by now.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
