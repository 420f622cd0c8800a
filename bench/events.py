"""Events from outside: correlation throughput and the latency from an event to the
release of the step after its wait.

    .venv/bin/python bench/events.py [--executions 5000] [--early 0.2] [--rate 0]

On a fresh topic prefix, one worker (all roles). N executions of `wait → next` wait for
an event each under a key of their own; a share (`--early`) of the events is sent before
their execution starts (held by the correlator until the wait begins), the rest once
every wait has subscribed, all at once or paced (`--rate` per second). Then, from the
topics: events/s (all N events sent to the
last `next` released), latency from each late event's send to its `next` StepReady
p50/p99, the worker's CPU per event (from /proc) and RSS. Asserts nothing; deletes its
topics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from pipeline import cpu_seconds, percentile, read_all, rss_mb  # bench/ is on sys.path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, delete_topics_with_prefix
from stepstream.workflows import build_definition

AWAIT = build_definition(
    {
        "id": "await-one",
        "steps": [
            {"id": "wait", "waitFor": {"event": "go", "correlationKey": "input.key"}},
            {"id": "next", "type": "noop", "dependsOn": ["wait"]},
        ],
    }
)

SENDING = 200


async def subscribed(settings: Settings, waits: int, timeout: float) -> None:
    """Until the coordinator has sent every wait's subscriptions (two per wait)."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = await read_all(settings, names.events)
        begun = {e.record["event_id"] for e in events if e.name == "EventWaitChanged"}
        if len(begun) >= 2 * waits:
            return
        await asyncio.sleep(1)  # the topic, read again
    raise TimeoutError(f"not every wait subscribed within {timeout} s")


async def released(settings: Settings, count: int, timeout: float) -> dict[str, int]:
    """Execution id -> when its `next` step was released, once all `count` are."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = {
            e.record["execution_id"]: e.record["timestamp"]
            for e in await read_all(settings, names.step_ready)
            if e.record["step_id"] == "next"
        }
        if len(ready) >= count:
            return ready
        await asyncio.sleep(1)  # the topic, read again
    raise TimeoutError(f"not every next step released within {timeout} s")


async def send_all(
    client: WorkflowClient, keys: list[str], sent_at: dict[str, int], rate: float = 0
) -> None:
    """Each event sent and acknowledged, up to SENDING at a time (as many producers
    would), its send time noted; with `rate`, paced to that many per second."""
    size = SENDING if rate <= 0 else max(1, int(rate / 10))
    began = time.monotonic()
    for start in range(0, len(keys), size):
        if rate > 0:  # the schedule is what is measured, not a synchronisation
            await asyncio.sleep(max(0.0, began + start / rate - time.monotonic()))
        chunk = keys[start : start + size]
        for key in chunk:
            sent_at[key] = int(time.time() * 1000)
        await asyncio.gather(
            *(client.send_event("go", k, {"key": k}, "t", event_id=f"e-{k}") for k in chunk)
        )


async def run(
    settings: Settings, worker: WorkerProcess, count: int, early: float, rate: float
) -> None:
    keys = [f"k-{n}" for n in range(count)]
    early_count = int(count * early)
    sent_at: dict[str, int] = {}
    async with WorkflowClient(settings, follow_outcomes=False) as client:
        cpu_before = cpu_seconds([worker.process.pid])
        began = time.monotonic()
        await send_all(client, keys[:early_count], {})  # before their waits exist: held
        ids = {}
        for key in keys:
            ids[key] = await client.start_workflow("await-one", {"key": key}, "t", "u")
        await client.flush()
        await subscribed(settings, count, 600)
        first_late = time.time()
        await send_all(client, keys[early_count:], sent_at, rate)
    ready = await released(settings, count, 600)
    cpu = cpu_seconds([worker.process.pid]) - cpu_before
    last = max(ready.values()) / 1000
    late = sorted(ready[ids[k]] - sent_at[k] for k in keys[early_count:])
    print(
        f"{count:,} events ({early_count:,} sent early) in {time.monotonic() - began:.1f} s"
        f" end to end; the {len(late):,} late ones correlated at"
        f" {len(late) / max(1e-9, last - first_late):,.0f} events/s"
    )
    if late:
        print(
            f"event -> next step released: p50 {percentile(late, 0.5):.0f} ms,"
            f" p99 {percentile(late, 0.99):.0f} ms, max {late[-1]} ms"
        )
    print(
        f"worker CPU {cpu * 1e6 / count:,.0f} us per execution (start, wait, event, next);"
        f" RSS {rss_mb(worker.process.pid):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=5_000)
    parser.add_argument("--early", type=float, default=0.2, help="share of events sent early")
    parser.add_argument("--rate", type=float, default=0, help="late events/s; 0: all at once")
    options = parser.parse_args()
    prefix = f"bench-events-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "8",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
    }
    settings = Settings.from_env(env)
    workdir = Path(tempfile.mkdtemp(prefix="stepstream-bench-", dir="/var/tmp"))
    asyncio.run(prepare(settings, AWAIT))
    worker = WorkerProcess("events-w1", env, workdir)
    try:
        asyncio.run(wait_until_ready(settings, [worker], 120))
        asyncio.run(run(settings, worker, options.executions, options.early, options.rate))
    finally:
        worker.stop()
        asyncio.run(delete_topics_with_prefix(kafka_access(settings), prefix))


if __name__ == "__main__":
    main()
