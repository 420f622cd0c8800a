"""Takeover cost against history: how long a worker joining with an empty data
directory takes to be ready, and its RSS, after N finished executions.

    .venv/bin/python bench/takeover.py [--history 10000,100000] [--modes kept,retired]

For each N and mode, on a fresh topic prefix: one worker runs N single-step executions
to their end; then a second worker joins with an empty data directory and takes half
the partitions over. Modes:
  kept     retention out of reach: every checkpoint stays (the engine before retention);
  retired  WORKFLOW_RETENTION_SECONDS=1: checkpoints and start ids leave, and once the
           changelogs are compacted, the joiner reads what is left. The bench sets its
           own changelogs to roll and compact within seconds and to drop tombstones
           after a second: the cost a day after the history ran.
  retired-day  the same, but tombstones are kept a day, as in production
           (streams.tables COMPACTED_PROMPTLY): the cost on the day the history ran,
           when a takeover also reads that day's tombstones.
A history of 0 is the empty group's baseline.
Prints the changelog bytes (executions and started, on the broker's disk), time from
the joiner's start to its ready line, and its RSS. Asserts nothing; deletes its topics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import delete_topics_with_prefix
from stepstream.workflows import StepDefinition, WorkflowDefinition

SINGLE = WorkflowDefinition("single", 1, "one no-op step", (StepDefinition("only", "noop"),))
TABLES = ("executions", "started")
STATE_DIR = os.environ.get("STEPSTREAM_STATE_DIR", "/var/tmp/stepstream")  # noqa: S108 - services.sh's
KAFKA_DATA = Path(STATE_DIR) / "kafka" / "data"
METRICS_PORT = 19471
DAY_MS = 86_400_000


def changelog_bytes(prefix: str) -> int:
    total = 0
    for table in TABLES:
        for directory in KAFKA_DATA.glob(f"{prefix}-engine-{table}-changelog-*"):
            total += sum(f.stat().st_size for f in directory.iterdir() if f.suffix == ".log")
    return total


def scrape(name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics").read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


async def compact_promptly(settings: Settings, tombstones_ms: int = 1000) -> None:
    """The bench's own changelogs roll and compact within seconds; tombstones stay for
    `tombstones_ms`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        configs = {
            "cleanup.policy": "compact",  # AlterConfigs replaces the whole set
            "segment.ms": "1000",
            "delete.retention.ms": str(tombstones_ms),
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
        }
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    f"{settings.topic_prefix}-engine-{t}-changelog",
                    configs,
                )
                for t in TABLES
            ]
        )
    finally:
        await admin.close()


async def run_history(settings: Settings, count: int) -> None:
    async with WorkflowClient(settings, follow_outcomes=False) as client:
        for n in range(count):
            await client.start_workflow("single", {}, f"t{n % 8}", f"u{n % 50}", f"h{n}")
        await client.flush()


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(1.0)  # polling the worker's metrics


def ready_seconds(worker: WorkerProcess, began: float, timeout: float = 600) -> float:
    marker = re.compile(rf"worker {worker.name} ready: [1-9]\d* partitions")
    while not marker.search(worker.log_path.read_text(errors="replace")):
        if worker.process.poll() is not None or time.monotonic() - began > timeout:
            raise RuntimeError(f"{worker.name} did not become ready:\n{worker.log_tail()}")
        time.sleep(0.05)  # polling the joiner's log for its ready line
    return time.monotonic() - began


def measure(count: int, mode: str, workdir: Path) -> str:
    prefix = f"bench-takeover-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "8",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
        "STEPSTREAM_METRICS_PORT": str(METRICS_PORT),
        "WORKFLOW_RETENTION_SECONDS": "100000000" if mode == "kept" else "1",
    }
    settings = Settings.from_env(env)
    asyncio.run(prepare(settings, SINGLE))
    first = WorkerProcess("takeover-w1", env, workdir)
    joiner = None
    try:
        asyncio.run(wait_until_ready(settings, [first], 120))
        if mode != "kept":
            asyncio.run(compact_promptly(settings, DAY_MS if mode == "retired-day" else 1000))
        asyncio.run(run_history(settings, count))
        wait_for(
            lambda: scrape('stepstream_executions_total{outcome="completed"}') >= count,
            1800,
            "history not completed",
        )
        if mode != "kept":
            wait_for(
                lambda: scrape("stepstream_checkpoints_retired_total") >= count,
                1800,
                "history not retired",
            )
            settled = [changelog_bytes(prefix)]
            while len(settled) < 4 or settled[-1] < settled[-4]:  # until compaction settles
                time.sleep(5.0)  # the log cleaner's pace
                settled.append(changelog_bytes(prefix))
        size = changelog_bytes(prefix)
        joiner_env = {**env, "STEPSTREAM_METRICS_PORT": "0"}
        began = time.monotonic()
        joiner = WorkerProcess("takeover-w2", joiner_env, workdir)
        seconds = ready_seconds(joiner, began)
        rss = rss_mb(joiner.process.pid)
        return f"| {count:,} | {mode} | {size / 1e6:.1f} MB | {seconds:.1f} s | {rss:.0f} MB |"
    finally:
        for worker in (joiner, first):
            if worker is not None:
                worker.stop()
        asyncio.run(delete_topics_with_prefix(kafka_access(settings), prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default="10000,100000")
    parser.add_argument("--modes", default="kept,retired")
    args = parser.parse_args()
    print("| finished executions | mode | changelog bytes | joiner ready in | joiner RSS |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as workdir:
        for count in (int(c) for c in args.history.split(",")):
            for mode in args.modes.split(","):
                print(measure(count, mode, Path(workdir) / f"{mode}-{count}"), flush=True)


if __name__ == "__main__":
    main()
