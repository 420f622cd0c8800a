"""Durable timers: N pending in one worker, then a takeover, then the fire.

    .venv/bin/python bench/timers.py [--timers 100000] [--spread 20] [--load 500]

On a fresh topic prefix: one worker arms N single-step `wait: {until}` executions,
due over `--spread` seconds starting after they are all armed. The bench prints the
worker's RSS with N timers pending; then stops it (SIGTERM) and starts a second worker
with an empty data directory, which takes every partition over: its time to ready;
then the timers' lateness (fired_at - due_at, from each StepAttemptEnded) p50/p99/max.
With `--load S`, S steps a second of other work (no-op diamonds, 4 steps each) run on
the same worker from the takeover until every timer has fired, and the steps/s it got
is printed beside the lateness. Asserts nothing; deletes its topics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pipeline import diamond, read_all  # sibling scripts: bench/ is on sys.path
from takeover import METRICS_PORT, ready_seconds, rss_mb, scrape, wait_for

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.events import now_ms
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, delete_topics_with_prefix
from stepstream.workflows import build_definition
from stepstream.workflows.durations import iso

WAITS = build_definition({"id": "until", "steps": [{"id": "u", "wait": {"until": "input.at"}}]})
OTHER = build_definition(diamond("other-work", "noop"))


def other_work(settings: Settings, steps_per_second: float, until_ms: int) -> int:
    """Start no-op diamonds at `steps_per_second` until `until_ms`; returns how many. Runs
    in a thread of its own, with its own event loop, beside the bench's polling."""
    started = [0]

    async def load() -> None:
        async with WorkflowClient(settings, follow_outcomes=False) as client:
            began, every = time.monotonic(), 4 / steps_per_second
            while now_ms() < until_ms:
                await client.start_workflow("other-work", {}, "t-load", f"u{started[0] % 50}")
                started[0] += 1
                ahead = began + started[0] * every - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)  # the load's pace
            await client.flush()

    thread = threading.Thread(target=asyncio.run, args=(load(),), name="other-work")
    thread.start()
    thread.join()
    return started[0]


async def arm(settings: Settings, count: int, first_due_ms: int, spread_ms: int) -> None:
    async with WorkflowClient(settings, follow_outcomes=False) as client:
        for n in range(count):
            due = first_due_ms + spread_ms * n // max(1, count)
            await client.start_workflow("until", {"at": iso(due)}, f"t{n % 8}", f"u{n % 50}")
        await client.flush()


async def lateness_ms(settings: Settings) -> list[int]:
    """fired_at - due_at of every timer, from the decisions on step-outcomes."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    late = []
    for event in await read_all(settings, names.step_outcomes):
        record = event.record
        if event.name == "StepAttemptEnded" and record["step_id"] == "u":  # not the probe's
            output = json.loads(record["output_json"])
            late.append(output["fired_at_ms"] - output["due_at_ms"])
    return sorted(late)


def scraped(name: str) -> float:
    """The metric, or 0 while the worker's metrics server is not up yet."""
    try:
        return scrape(name)
    except OSError:
        return 0.0


def percentile(values: list[int], q: float) -> int:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds the due times span")
    parser.add_argument("--load", type=float, default=0.0, help="steps/s of other work")
    parser.add_argument(
        "--arm-rate",
        type=float,
        default=1500.0,
        help="starts/s the worker is expected to arm (the first timer falls due after)",
    )
    options = parser.parse_args()
    prefix = f"bench-timers-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "8",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
        "STEPSTREAM_METRICS_PORT": str(METRICS_PORT),
    }
    settings = Settings.from_env(env)
    workdir = Path(tempfile.mkdtemp(prefix="stepstream-bench-", dir="/var/tmp"))
    asyncio.run(prepare(settings, WAITS, OTHER))
    first = WorkerProcess("timers-w1", env, workdir)
    joiner = None
    try:
        asyncio.run(wait_until_ready(settings, [first], 120))
        count = options.timers
        publish_s = count / options.arm_rate + 30  # the starts and the arming, before any is due
        began = time.monotonic()
        first_due = now_ms() + int(publish_s * 1000) + 30_000
        asyncio.run(arm(settings, count, first_due, int(options.spread * 1000)))
        wait_for(lambda: scraped("stepstream_timers_pending") >= count, 1800, "timers not armed")
        armed_s = time.monotonic() - began
        print(f"armed {count:,} timers in {armed_s:.1f} s; RSS {rss_mb(first.process.pid):.0f} MB")
        if now_ms() > first_due - 20_000:
            print("warning: arming took longer than planned; the takeover overlaps the fire")
        first.stop()
        began = time.monotonic()
        joiner = WorkerProcess("timers-w2", env, workdir)
        print(
            f"takeover with {count:,} pending: ready in {ready_seconds(joiner, began):.1f} s,"
            f" RSS {rss_mb(joiner.process.pid):.0f} MB"
        )
        started = 0
        if options.load:  # from the takeover until the last timer is due, and a bit
            load_began = time.monotonic()
            last_due = first_due + int(options.spread * 1000) + 2_000
            started = other_work(settings, options.load, last_due)
            loaded_s = time.monotonic() - load_began
            print(
                f"other work beside the timers: {started * 4:,} steps started in"
                f" {loaded_s:.1f} s, {started * 4 / loaded_s:,.0f} steps/s (asked {options.load:g})"
            )
        done = 'stepstream_executions_total{outcome="completed"}'
        draining = time.monotonic()
        wait_for(lambda: scraped(done) >= count + started, 1800, "timers not all fired")
        if options.load:
            print(
                f"every timer and all the other work done {time.monotonic() - draining:.1f} s later"
            )
        late = asyncio.run(lateness_ms(settings))
        print(
            f"fired {len(late):,} over {options.spread:g} s: lateness p50 {percentile(late, 0.5)}"
            f" ms, p99 {percentile(late, 0.99)} ms, max {late[-1]} ms; early: "
            f"{sum(1 for n in late if n < 0)}"
        )
    finally:
        for worker in (joiner, first):
            if worker is not None:
                worker.stop()
        asyncio.run(delete_topics_with_prefix(kafka_access(settings), prefix))


if __name__ == "__main__":
    main()
