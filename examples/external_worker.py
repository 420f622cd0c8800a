"""An external step worker that speaks only Kafka and the Avro schemas (no stepstream).

    python examples/external_worker.py --queue billing --schemas schemas/ \\
        [--bootstrap 127.0.0.1:19092] [--prefix stepstream]

It does what a worker in any language does:
1. consume `<prefix>.tasks.<queue>` in a consumer group of its own;
2. decode each record: Avro single-object encoding, i.e. the bytes C3 01, the 8-byte
   CRC-64-AVRO fingerprint of the writer schema's parsing canonical form, then the Avro
   body of a `StepReady` (schemas/StepReady.avsc);
   A writer schema of `schemas/` or `schemas/history/` is read into the current one; a
   fingerprint it knows of neither is a newer engine's: it stops without committing
   (update its schemas), since skipping would leave the attempt to time out;
3. skip a task past `timestamp + timeout_ms` (the coordinator has timed that attempt out
   and released the next): commit it with no report, which would only be ignored;
4. answer a task of a type it does not run (with `--types`) with a `StepFailed`,
   retryable false: a retry would come back to this queue's group;
5. else do the work (here: echo the step's config and say who did it) and publish a
   `StepCompleted` to `<prefix>.step-completed`, keyed by the execution id (Kafka's
   default partitioner), copying the StepReady's identity fields. The deadline counts
   from the release, so a task that waited in the queue for more than a third of its
   `timeout_ms` gets a `StepHeartbeat` at once, and a running one every third of it;
6. commit the tasks' offsets only after their reports are acknowledged, so a worker that
   dies mid-step leaves its tasks to be delivered again (reports are de-duplicated by
   event_id). It takes the tasks a batch at a time and runs a batch's tasks together;
   every worker of a queue is in one consumer group, `<prefix>-external-<queue>`;
7. announce itself on `<prefix>.workers` (a `WorkerAnnounced` keyed by its name) at start
   and every 10 s, and leave a tombstone there when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"
ANNOUNCE_INTERVAL_MS = 10_000
IDENTITY = ("execution_id", "workflow_id", "workflow_version", "tenant_id", "user_id")


class Schema:
    """One .avsc file, with its single-object header, and the earlier versions of it in
    `history/` that a record may still have been written with."""

    def __init__(self, path: Path) -> None:
        self.parsed = parse_schema(json.loads(path.read_text()))
        self.header = header_of(self.parsed)
        versions = sorted((path.parent / "history").glob(f"{path.stem}.v*.avsc"))
        self.writers = {self.header: self.parsed}
        for version in versions:
            parsed = parse_schema(json.loads(version.read_text()))
            self.writers[header_of(parsed)] = parsed

    def encode(self, record: dict[str, Any]) -> bytes:
        body = io.BytesIO()
        schemaless_writer(body, self.parsed, record)
        return self.header + body.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Raises UnknownWriter for a fingerprint of no version known here."""
        if data[:2] != MARKER:
            raise ValueError("not Avro single-object encoding")
        writer = self.writers.get(data[:10])
        if writer is None:
            raise UnknownWriter(f"writer fingerprint {data[2:10].hex()} is of no known version")
        return dict(schemaless_reader(io.BytesIO(data[10:]), writer, self.parsed))


class UnknownWriter(ValueError):
    """A record written with a schema version newer than this worker's copy."""


def header_of(parsed: Any) -> bytes:
    canonical = to_parsing_canonical_form(parsed)
    return MARKER + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def event_id(*parts: object) -> str:
    """The contract's recipe: the first 32 hex digits of the SHA-256 of the parts joined
    with "/". A report's parts are execution_id, kind, step_id, attempt, so the report of
    a task delivered twice carries the same id and consumers drop the second."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:32]


def report_id(task: dict[str, Any], kind: str) -> str:
    return event_id(task["execution_id"], kind, task["step_id"], task["attempt"])


def completed(task: dict[str, Any], output: Any, started_ms: int, worker: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        **{field: task[field] for field in IDENTITY},
        "event_id": report_id(task, "step-completed"),
        "timestamp": now,
        "step_id": task["step_id"],
        "step_type": task["step_type"],
        "attempt": task["attempt"],
        "output_json": json.dumps(output),
        "started_at": started_ms,
        "finished_at": now,
        "worker": worker,
    }


def failed(task: dict[str, Any], error_type: str, message: str, worker: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        **{field: task[field] for field in IDENTITY},
        "event_id": report_id(task, "step-failed"),
        "timestamp": now,
        "step_id": task["step_id"],
        "step_type": task["step_type"],
        "attempt": task["attempt"],
        "error_type": error_type,
        "error_message": message,
        "retryable": False,
        "started_at": now,
        "finished_at": now,
        "worker": worker,
    }


def heartbeat(task: dict[str, Any], worker: str) -> dict[str, Any]:
    """A StepHeartbeat: the attempt is still being worked on; its deadline moves on. Its
    id writes the timestamp as decimal milliseconds, the value of its `timestamp`."""
    now = int(time.time() * 1000)
    return {
        **{field: task[field] for field in IDENTITY},
        "event_id": event_id(
            task["execution_id"], "step-heartbeat", task["step_id"], task["attempt"], now
        ),
        "timestamp": now,
        "step_id": task["step_id"],
        "step_type": task["step_type"],
        "attempt": task["attempt"],
        "worker": worker,
    }


def waited_ms(task: dict[str, Any]) -> float:
    """How long ago the coordinator released the task (`timestamp`): its deadline counts
    from then, not from when this worker took it."""
    released = task["timestamp"]  # fastavro reads a timestamp-millis as a datetime
    if isinstance(released, datetime):
        released = int(released.timestamp() * 1000)
    return time.time() * 1000 - released


async def work(task: dict[str, Any], worker: str) -> Any:
    """The step itself. A real worker charges a card, renders a PDF, calls a partner..."""
    config = json.loads(task["config_json"])
    await asyncio.sleep(float(config.get("seconds", 0)))
    return {"done_by": worker, "step": task["step_id"], "config": config}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--schemas", type=Path, required=True, help="the .avsc folder")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--prefix", default=os.environ.get("STEPSTREAM_TOPIC_PREFIX"))
    parser.add_argument("--name", default=f"external-{os.getpid()}")
    parser.add_argument(
        "--types", default="", help="step types it runs, comma-separated (default: any)"
    )
    args = parser.parse_args()
    ready = Schema(args.schemas / "StepReady.avsc")
    report = Schema(args.schemas / "StepCompleted.avsc")
    failure = Schema(args.schemas / "StepFailed.avsc")
    types = {t for t in args.types.split(",") if t}
    alive = Schema(args.schemas / "StepHeartbeat.avsc")
    announced = Schema(args.schemas / "WorkerAnnounced.avsc")
    consumer = AIOKafkaConsumer(
        f"{args.prefix}.tasks.{args.queue}",
        bootstrap_servers=args.bootstrap,
        group_id=f"{args.prefix}-external-{args.queue}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    reports = f"{args.prefix}.step-completed"
    started_at = int(time.time() * 1000)

    async def announce() -> None:
        """Tell `register` and `stepstream workers` what this worker serves, every 10 s."""
        while True:
            announcement = {
                "worker": args.name,
                "step_types": sorted(types),
                "queues": [args.queue],
                "builtin_executor": False,
                "started_at": started_at,
                "timestamp": int(time.time() * 1000),
                "interval_ms": ANNOUNCE_INTERVAL_MS,
            }
            workers = f"{args.prefix}.workers"
            await producer.send_and_wait(
                workers, announced.encode(announcement), key=args.name.encode()
            )
            await asyncio.sleep(ANNOUNCE_INTERVAL_MS / 1000)

    announcing = asyncio.ensure_future(announce())
    print(f"{args.name}: serving queue {args.queue}", flush=True)

    async def handle(data: bytes | None) -> None:
        started = int(time.time() * 1000)
        try:
            task = ready.decode(data or b"")
        except UnknownWriter as error:  # a newer engine: stop, commit nothing, say why
            raise SystemExit(f"{args.name}: {error}: update this worker's schemas") from error
        except (ValueError, EOFError) as error:  # not a task at all: skip it, say so
            print(f"{args.name}: skipped an undecodable task: {error}", flush=True)
            return
        key = task["execution_id"].encode()
        waited = waited_ms(task)
        if waited > task["timeout_ms"]:
            # The coordinator has timed this attempt out and released the next one:
            # doing it would be wasted work, its report ignored. No report at all.
            print(f"{args.name}: skipped expired attempt {task['attempt']}", flush=True)
            return
        if types and task["step_type"] not in types:
            why = f"worker {args.name} on queue {args.queue} runs {', '.join(sorted(types))}"
            value = failure.encode(failed(task, "UnknownStepType", why, args.name))
            await producer.send(reports, value, key=key)
            return
        if waited > task["timeout_ms"] / 3:  # it waited: tell the coordinator it is taken
            await producer.send(reports, alive.encode(heartbeat(task, args.name)), key=key)
        working = asyncio.ensure_future(work(task, args.name))
        # A step longer than its timeout stays alive with a heartbeat every third of it.
        while not (await asyncio.wait([working], timeout=task["timeout_ms"] / 3000))[0]:
            await producer.send(reports, alive.encode(heartbeat(task, args.name)), key=key)
        output = working.result()
        value = report.encode(completed(task, output, started, args.name))
        await producer.send(reports, value, key=key)

    try:
        while True:  # a batch at a time: its tasks run together, then one commit
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            tasks = [message.value for messages in batches.values() for message in messages]
            if not tasks:
                continue
            await asyncio.gather(*(handle(task) for task in tasks))
            await producer.flush()  # every report acknowledged...
            await consumer.commit()  # ...before the tasks are committed
    finally:
        announcing.cancel()
        await consumer.stop()
        # A tombstone under its name: gone on purpose, not silent.
        await producer.send_and_wait(f"{args.prefix}.workers", None, key=args.name.encode())
        await producer.stop()


async def until_stopped() -> None:
    """Run until SIGTERM or SIGINT, then leave the group cleanly: its partitions move to
    the other workers at once instead of after the session timeout."""
    serving = asyncio.ensure_future(main())
    for stop in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(stop, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


if __name__ == "__main__":
    asyncio.run(until_stopped())
