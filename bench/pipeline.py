"""Benchmark of the engine on the real broker, with the raw aiokafka bound beside it.

    .venv/bin/python bench/pipeline.py [--executions 10000] [--paced-seconds 10]

Each run uses a fresh topic prefix and its own worker process. Prints numbers; asserts
nothing. Phases:
  1. the 4-step example with 1 s steps: wall time vs sequential sum and critical path;
  2. no-op throughput over N executions of the 4-step example (saturation), with the
     workers' CPU per step from /proc;
  3. scheduling delay at a paced 200 steps/s, then 1,000 steps/s, each started once the
     worker has caught up with the earlier phases;
  4. the raw bound: aiokafka moving the same messages per step, in this run;
  5. worker RSS with N executions in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import breakdown  # bench/ is on sys.path
import peer_harness as harness
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from peer_harness import percentile

from stepstream.client.watch import reader, rewind, wait_for_commits
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.schemas.codec import CODEC, DecodedEvent
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames, delete_topics_with_prefix
from stepstream.workflows import build_definition


def diamond(workflow_id: str, step_type: str, seconds: float = 0.0) -> dict:
    config = {"seconds": seconds} if step_type == "sleep" else {}
    return {
        "id": workflow_id,
        "version": 1,
        "steps": [
            {"id": "step-1", "type": step_type, "config": config},
            {"id": "step-2", "type": step_type, "dependsOn": ["step-1"], "config": config},
            {"id": "step-3", "type": step_type, "dependsOn": ["step-1"], "config": config},
            {
                "id": "step-4",
                "type": step_type,
                "dependsOn": ["step-2", "step-3"],
                "config": config,
            },
        ],
    }


DEFINITIONS = [
    build_definition(diamond("diamond-1s", "sleep", 1.0)),
    build_definition(diamond("diamond-noop", "noop")),
    build_definition(
        {
            "id": "hold",
            "version": 1,
            "steps": [
                {"id": "hold", "type": "sleep", "config": {"seconds": 120}, "timeoutMs": 300_000}
            ],
        }
    ),
]


async def read_all(settings: Settings, topic: str) -> list[DecodedEvent]:
    consumer = reader(settings, max_poll_records=5000)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        events = []
        while any([await consumer.position(p) < ends[p] for p in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                events += [CODEC.decode(r.value) for r in records]
        return events
    finally:
        await consumer.stop()


def scheduling_delays(completed: list[DecodedEvent], ids: set[str]) -> list[float]:
    """Dependency completed -> dependent step started, in ms, from executor timestamps."""
    by_execution: dict[str, dict[str, dict]] = {}
    for event in completed:
        if event.record["execution_id"] in ids:
            by_execution.setdefault(event.record["execution_id"], {})[event.record["step_id"]] = (
                event.record
            )
    delays = []
    for steps in by_execution.values():
        if len(steps) < 4:
            continue
        for step, deps in (
            ("step-2", ["step-1"]),
            ("step-3", ["step-1"]),
            ("step-4", ["step-2", "step-3"]),
        ):
            released = max(steps[d]["finished_at"] for d in deps)
            delays.append(steps[step]["started_at"] - released)
    return delays


def hops(
    completed: list[DecodedEvent], ready: list[DecodedEvent], ids: set[str]
) -> tuple[list[float], list[float]]:
    """The scheduling delay's two hops, in ms: the last dependency's completion -> the
    coordinator's StepReady (the executor's send, the coordinator's fetch and batch), and
    that StepReady -> the step started (the coordinator's send, the executor's fetch)."""
    finished = {
        (e.record["execution_id"], e.record["step_id"]): e.record["finished_at"]
        for e in completed
        if e.record["execution_id"] in ids
    }
    started = {
        (e.record["execution_id"], e.record["step_id"]): e.record["started_at"]
        for e in completed
        if e.record["execution_id"] in ids
    }
    deps = {"step-2": ["step-1"], "step-3": ["step-1"], "step-4": ["step-2", "step-3"]}
    to_ready, to_start = [], []
    for event in ready:
        execution_id, step = event.record["execution_id"], event.record["step_id"]
        if execution_id not in ids or step not in deps or (execution_id, step) not in started:
            continue
        released = max(finished[(execution_id, d)] for d in deps[step])
        to_ready.append(event.record["timestamp"] - released)
        to_start.append(started[(execution_id, step)] - event.record["timestamp"])
    return to_ready, to_start


async def one_second_steps(settings: Settings, client: WorkflowClient) -> None:
    execution_id = await client.start_workflow("diamond-1s", {}, "bench", "bench")
    started = time.perf_counter()
    await client.wait_for(execution_id, timeout=60)
    wall = time.perf_counter() - started
    print(
        f"[1] 4-step example, 1 s steps: wall {wall:.2f} s (from the start request); "
        f"sequential sum 4.00 s; critical path 3.00 s; overhead over the critical path "
        f"{(wall - 3) * 1000:.0f} ms"
    )


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used (from /proc; steadier than steps/s on a
    machine whose speed drifts between sittings)."""
    return sum(map(harness.cpu_seconds, pids))


def service_pids() -> dict[str, list[int]]:
    """The machine's other CPU users during a run (they share its 2 cores)."""
    return {
        "broker": harness.pids_of("kafka.Kafka"),
        "postgres": harness.pids_of("postgres"),
        "this client": [os.getpid()],
    }


async def start_and_wait(
    client: WorkflowClient, workflow_id: str, executions: int
) -> tuple[list[str], float]:
    """Start `executions` of the workflow as fast as the client goes, wait until all have
    completed; their ids and the seconds it took."""
    started = time.perf_counter()
    ids = [
        await client.start_workflow(workflow_id, {}, f"t{n % 16}", f"u{n}")
        for n in range(executions)
    ]
    await client.flush()
    outcomes = await asyncio.gather(*(client.wait_for(i, timeout=600) for i in ids))
    elapsed = time.perf_counter() - started
    assert all(o.status == "completed" for o in outcomes)
    return ids, elapsed


async def saturation(
    settings: Settings,
    client: WorkflowClient,
    executions: int,
    workers: dict[str, int],
    profile: Path | None = None,
) -> float:
    """`workers`: the worker processes' pids by name; each one's CPU per step is printed
    when there are several. With `profile` (a directory), each worker is sampled by
    py-spy meanwhile and where its CPU went is printed by part (bench/breakdown.py)."""
    pids = list(workers.values())
    samplings = {
        name: breakdown.Sampling(pid, profile / f"{name}.collapsed")
        for name, pid in (workers.items() if profile else ())
    }
    cpu_before = cpu_seconds(pids)
    each_before = {name: cpu_seconds([pid]) for name, pid in workers.items()}
    # Listed again at the end: the persister's PostgreSQL backends may open meanwhile.
    others_before = harness.cpu_by_process(service_pids())
    ids, elapsed = await start_and_wait(client, "diamond-noop", executions)
    steps = executions * 4
    await quiesce(settings)  # the persister's share of the work is part of a step's cost
    cpu_per_step_us = (cpu_seconds(pids) - cpu_before) / steps * 1e6
    for sampling in samplings.values():
        sampling.stop()
    each_us = {
        name: (cpu_seconds([pid]) - each_before[name]) / steps * 1e6
        for name, pid in workers.items()
    }
    others_us = {
        name: seconds / steps * 1e6
        for name, seconds in harness.cpu_spent(others_before, service_pids()).items()
    }
    names = TopicNames.for_prefix(settings.topic_prefix)
    delays = scheduling_delays(await read_all(settings, names.step_completed), set(ids))
    print(
        f"[2] saturation, {executions} executions x 4 no-op steps: {elapsed:.1f} s, "
        f"{steps / elapsed:,.0f} steps/s, {executions / elapsed:,.0f} workflows/s; "
        f"worker CPU {cpu_per_step_us:.0f} us per step (until persisted); "
        f"scheduling delay p50 {percentile(delays, 0.5):.0f} ms, "
        f"p99 {percentile(delays, 0.99):.0f} ms (queueing included)"
    )
    if len(workers) > 1:
        print(
            "    worker CPU per step by process: "
            + ", ".join(f"{name} {us:.0f} us" for name, us in each_us.items())
        )
    print(
        "    CPU per step elsewhere: "
        + ", ".join(f"{name} {us:.0f} us" for name, us in others_us.items())
    )
    for name, sampling in samplings.items():
        print(breakdown.report(name, sampling.output, each_us[name]))
    return steps / elapsed


async def quiesce(settings: Settings) -> None:
    """Wait until the worker has nothing left over from earlier phases: the executor and
    persister groups (the persister lags furthest behind at saturation) have committed
    up to the ends of their topics. Otherwise a paced phase measures the backlog."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    prefix = settings.topic_prefix
    await wait_for_commits(settings, f"{prefix}-executor", [names.step_ready], timeout=300)
    persisted = [names.executions, names.step_outcomes, names.workflow_completed]
    await wait_for_commits(settings, f"{prefix}-persister", persisted, timeout=300)


async def paced(
    settings: Settings, client: WorkflowClient, seconds: float, steps_per_second: int
) -> None:
    await quiesce(settings)
    rate = steps_per_second / 4  # workflows/s
    ids = []
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ids.append(await client.start_workflow("diamond-noop", {}, f"t{n % 16}", f"p{n}"))
    await asyncio.gather(*(client.wait_for(i, timeout=300) for i in ids))
    names = TopicNames.for_prefix(settings.topic_prefix)
    completed = await read_all(settings, names.step_completed)
    delays = scheduling_delays(completed, set(ids))
    to_ready, to_start = hops(completed, await read_all(settings, names.step_ready), set(ids))
    print(
        f"[3] paced at {steps_per_second:,} steps/s for {seconds:g} s: scheduling delay "
        f"p50 {percentile(delays, 0.5):.0f} ms, p99 {percentile(delays, 0.99):.0f} ms, "
        f"max {max(delays):.0f} ms, mean {statistics.fmean(delays):.1f} ms"
    )
    print(
        "    hops, p50/p99: completed -> ready "
        f"{percentile(to_ready, 0.5):.0f}/{percentile(to_ready, 0.99):.0f} ms, "
        f"ready -> started {percentile(to_start, 0.5):.0f}/{percentile(to_start, 0.99):.0f} ms"
    )


async def raw_bound(settings: Settings, steps: int) -> float:
    """Per step the engine produces 3 messages (ready, completed, changelog) and consumes 2
    (ready, completed). Raw aiokafka does the same: a relay A -> B, plus a side write."""
    prefix = f"bench-raw-{uuid.uuid4().hex[:8]}"
    topic_a, topic_b, side = f"{prefix}.a", f"{prefix}.b", f"{prefix}.side"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics(
        [NewTopic(t, settings.topic_partitions, 1) for t in (topic_a, topic_b, side)]
    )
    await admin.close()
    bootstrap = settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    relay_in = AIOKafkaConsumer(
        topic_a, bootstrap_servers=bootstrap, group_id=f"{prefix}-r", auto_offset_reset="earliest"
    )
    sink = AIOKafkaConsumer(
        topic_b, bootstrap_servers=bootstrap, group_id=f"{prefix}-s", auto_offset_reset="earliest"
    )
    await producer.start()
    await relay_in.start()
    await sink.start()
    payload = os.urandom(200)

    async def relay() -> None:
        moved = 0
        while moved < steps:
            for records in (await relay_in.getmany(timeout_ms=200)).values():
                for record in records:
                    await producer.send(topic_b, payload, key=record.key)
                    await producer.send(side, payload, key=record.key)
                    moved += 1

    async def drain() -> None:
        seen = 0
        while seen < steps:
            for records in (await sink.getmany(timeout_ms=200)).values():
                seen += len(records)

    started, cpu_before = time.perf_counter(), time.process_time()
    tasks = [asyncio.create_task(relay()), asyncio.create_task(drain())]
    for n in range(steps):
        await producer.send(topic_a, payload, key=str(n % 1000).encode())
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu_before) / steps * 1e6
    for client in (relay_in, sink):
        await client.stop()
    await producer.stop()
    await delete_topics_with_prefix(bootstrap, prefix)
    print(
        f"[4] raw aiokafka bound, {steps} steps (3 produces + 2 consumes each): "
        f"{elapsed:.1f} s, {steps / elapsed:,.0f} steps/s, {cpu_us:.0f} us of CPU per step (the "
        "producer of the starts included)"
    )
    return steps / elapsed


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def in_flight_memory(
    settings: Settings, client: WorkflowClient, workers: list[WorkerProcess], executions: int
) -> None:
    before = [rss_mb(worker.process.pid) for worker in workers]
    ids = [
        await client.start_workflow("hold", {}, f"t{n % 16}", f"m{n}") for n in range(executions)
    ]
    await client.flush()
    names = TopicNames.for_prefix(settings.topic_prefix)
    # In flight: every execution has released its (120 s) step to the executors.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready = await read_all(settings, names.step_ready)
        if sum(e.record["workflow_id"] == "hold" for e in ready) >= executions:
            break
    for worker, idle in zip(workers, before, strict=True):
        print(
            f"[5] RSS of {worker.name}: {idle:.0f} MB idle, {rss_mb(worker.process.pid):.0f} MB "
            f"with {len(ids)} executions in flight"
        )


def start_workers(
    env: dict[str, str], workdir: Path, count: int, concurrency: int = 64, split: bool = False
) -> list[WorkerProcess]:
    """`count` workers, each one process, or with `split` two: `--roles coordinator` and
    `--roles executor,persister` (the steps and PostgreSQL on the second core)."""
    role_sets = ("coordinator", "executor,persister") if split else (None,)
    return [
        WorkerProcess(
            f"bench-worker-{n}" + (f"-{roles.split(',')[0]}" if roles else ""),
            env,
            workdir,
            ("--concurrency", str(concurrency), *(("--roles", roles) if roles else ())),
        )
        for n in range(count)
        for roles in role_sets
    ]


async def fresh_engine() -> tuple[dict[str, str], Settings, Path]:
    """A worker environment of its own (fresh topic prefix, definitions registered) and a
    directory for its processes. Rate limiting is off: benches measure the engine."""
    env = {
        **os.environ,
        **Settings.from_env().as_environment(),
        "STEPSTREAM_TOPIC_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "WORKFLOW_RATE_LIMIT_ENABLED": "false",
    }
    settings = Settings.from_env(env)
    await prepare(settings, *DEFINITIONS)
    return env, settings, Path(tempfile.mkdtemp(prefix="stepstream-bench-", dir="/var/tmp"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the group")
    parser.add_argument("--phases", default="12345", help="which phases to run, e.g. 23")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample each worker with py-spy during phase 2 and print where its CPU went",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="each worker as two processes: the coordinator, and the executor and persister",
    )
    args = parser.parse_args()
    env, settings, workdir = await fresh_engine()
    prefix = settings.topic_prefix
    workers = start_workers(env, workdir, args.workers, args.concurrency, args.split)
    try:
        await wait_until_ready(settings, workers, timeout=120)
        print(
            f"broker {settings.kafka_bootstrap_servers}, {settings.topic_partitions} "
            f"partitions, {args.workers} worker(s) in {len(workers)} process(es) (executor "
            f"concurrency {args.concurrency} each), "
            f"store rocksdb, {os.cpu_count()} cores shared with the broker"
        )
        engine = None
        async with WorkflowClient(settings) as client:
            if "1" in args.phases:
                await one_second_steps(settings, client)
            if "2" in args.phases:
                pids = {w.name: w.process.pid for w in workers}
                profile = workdir if args.profile else None
                engine = await saturation(settings, client, args.executions, pids, profile)
            if "3" in args.phases:
                for steps_per_second in (200, 1_000):  # the saturated one last
                    await paced(settings, client, args.paced_seconds, steps_per_second)
        if "4" in args.phases:
            bound = await raw_bound(settings, args.executions * 4)
            if engine is not None:
                print(f"    engine / raw bound = {engine / bound:.2f}")
        if "5" in args.phases:
            async with WorkflowClient(settings, follow_outcomes=False) as client:
                await in_flight_memory(settings, client, workers, args.executions)
    finally:
        for each in workers:
            each.stop()
        await delete_topics_with_prefix(kafka_access(settings), prefix)


if __name__ == "__main__":
    asyncio.run(main())
