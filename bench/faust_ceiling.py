"""How fast can a faust agent do the coordinator's least work per event, on this machine?

    .venv/bin/python bench/faust_ceiling.py [--events 20000]

The coordinator must, for every step, consume at least one event (its StepCompleted),
write the execution's checkpoint to a changelog-backed table, and produce at least one
event. This measures that minimum and nothing else (no decoding, no reducer, no executor,
intake or persister in the process), so its rate is a ceiling for any coordinator built
as a faust agent over a faust table here. Side by side, in one run, on fresh topics
pre-filled with the same events:

  A.  faust agent, consume only;
  B1. faust agent, consume + one produce;
  B2. faust agent, consume + table write (rocksdb, changelog);
  B.  faust agent, consume + table write + one produce: the coordinator's minimum;
  B3. B with the memory store instead of rocksdb;
  C.  raw aiokafka, consume + two produces (output and a side topic standing in for the
      changelog), `getmany` batches.

faust relays send the way the engine sends (straight to faust's producer) with the
engine's faust settings and corrections. Each relay runs in its own process, like a
worker, and is timed by the broker timestamps of its first and last produced record
(A and B2 produce only a marker on their first and last event). Prints numbers; asserts
nothing. Each relay's log (faust's warnings) is kept beside its table store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stepstream.client.watch import reader
from stepstream.streams.kafka_access import KafkaAccess
from stepstream.streams.settings import Settings
from stepstream.streams.topics import delete_topics_with_prefix

PAYLOAD = os.urandom(200)
MODES = {
    "consume": "A.  faust agent, consume only",
    "produce": "B1. faust agent, consume + produce",
    "table-only": "B2. faust agent, consume + table write",
    "table": "B.  faust agent, consume + table write + produce",
    "table-memory": "B3. B with the memory store",
    "raw": "C.  raw aiokafka, consume + 2 produces",
}


def faust_relay(
    bootstrap: str, prefix: str, partitions: int, count: int, mode: str, datadir: str
) -> None:
    """The child process for A and B: a faust worker with one agent."""
    import faust
    import uvloop

    from stepstream.streams import faust_fixes
    from stepstream.streams.engine import Worker

    faust_fixes.apply()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = faust.App(
        f"{prefix}-{mode}",
        broker=f"kafka://{bootstrap}",
        store="memory://" if mode == "table-memory" else "rocksdb://",
        datadir=datadir,
        topic_partitions=partitions,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_linger_ms=2,
        producer_acks=-1,
        stream_wait_empty=False,
    )
    source = app.topic(f"{prefix}.in", key_serializer="raw", value_serializer="raw")
    table = app.Table("state", partitions=partitions, key_type=bytes, value_type=bytes)
    out = f"{prefix}.out"

    @app.agent(source)
    async def relay(stream: Any) -> None:
        producer = await app.maybe_start_producer()
        seen = 0
        async for event in stream.events():
            key = event.message.key
            seen += 1
            if mode in ("table-only", "table", "table-memory"):
                table[key] = event.value
            if mode in ("produce", "table", "table-memory") or seen in (1, count):
                await producer.send(out, key, event.value, None, None, None)

    Worker(app, Path(datadir), loglevel="warning", quiet=True).execute_from_commandline()


async def raw_relay(bootstrap: str, prefix: str, count: int) -> None:
    """The child process for C."""
    consumer = AIOKafkaConsumer(
        f"{prefix}.in",
        bootstrap_servers=bootstrap,
        group_id=f"{prefix}-raw",
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await consumer.start()
    await producer.start()
    moved = 0
    while moved < count:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                await producer.send(f"{prefix}.out", record.value, key=record.key)
                await producer.send(f"{prefix}.side", record.value, key=record.key)
            moved += len(records)
    await producer.flush()
    await consumer.stop()
    await producer.stop()


async def fill(bootstrap: str, prefix: str, partitions: int, count: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics(
        [NewTopic(f"{prefix}.{t}", partitions, 1) for t in ("in", "out", "side")]
    )
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    for n in range(count):
        await producer.send(f"{prefix}.in", PAYLOAD, key=f"execution-{n % 5000}".encode())
    await producer.stop()


async def first_and_last(
    settings: Settings, topic: str, partitions: int, count: int, timeout: float
) -> tuple[float, float]:
    """Broker timestamps (ms) of the earliest and latest of `count` records on `topic`,
    waiting until all of them are there."""
    consumer = reader(settings, max_poll_records=5000)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        first, last, seen = float("inf"), 0.0, 0
        deadline = time.monotonic() + timeout
        while seen < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen} of {count} records on {topic}")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += len(records)
                first = min(first, *(r.timestamp for r in records))
                last = max(last, *(r.timestamp for r in records))
        return first, last
    finally:
        await consumer.stop()


async def measure(settings: Settings, mode: str, count: int, partitions: int) -> float:
    prefix = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.kafka_bootstrap_servers
    await fill(bootstrap, prefix, partitions, count)
    datadir = tempfile.mkdtemp(prefix="stepstream-ceiling-", dir="/var/tmp")
    log = (Path(datadir) / "relay.log").open("wb")  # faust's warnings, e.g. a full buffer
    child = subprocess.Popen(  # noqa: S603 - this same script
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--prefix",
            prefix,
            "--datadir",
            datadir,
            "--events",
            str(count),
            "--partitions",
            str(partitions),
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        produced = 2 if mode in ("consume", "table-only") else count
        first, last = await first_and_last(settings, f"{prefix}.out", partitions, produced, 600)
        return count / max((last - first) / 1000, 1e-3)
    finally:
        child.terminate()
        child.wait(timeout=60)
        log.close()
        await delete_topics_with_prefix(KafkaAccess(bootstrap), prefix)


async def main(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    print(
        f"broker {settings.kafka_bootstrap_servers}, {args.partitions} partitions, "
        f"{args.events:,} pre-filled events, {os.cpu_count()} cores shared with the broker"
    )
    rates = {}
    for mode, label in MODES.items():
        rates[mode] = await measure(settings, mode, args.events, args.partitions)
        print(f"{label}: {rates[mode]:,.0f} events/s")
    print(
        f"B / C = {rates['table'] / rates['raw']:.2f}; B bounds a faust coordinator at "
        f"{rates['table'] / 1.25:,.0f} steps/s for 4-step diamonds (1.25 coordinator "
        "events per step), with nothing else in its process"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--child",
        choices=list(MODES),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--datadir", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child == "raw":
        boot = Settings.from_env().kafka_bootstrap_servers
        asyncio.run(raw_relay(boot, parsed.prefix, parsed.events))
    elif parsed.child:
        sys.argv = [sys.argv[0], "worker"]
        faust_relay(
            Settings.from_env().kafka_bootstrap_servers,
            parsed.prefix,
            parsed.partitions,
            parsed.events,
            parsed.child,
            parsed.datadir,
        )
    else:
        asyncio.run(main(parsed))
