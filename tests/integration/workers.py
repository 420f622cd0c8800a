"""Worker processes for integration tests: real `stepstream worker` subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import CODEC, DecodedEvent, EventCodecError
from streams.client import WorkflowClient
from streams.definitions import register_definition
from streams.settings import Settings
from streams.topics import TopicNames, declare_topics
from workflows import StepDefinition, WorkflowDefinition, build_definition

PROBE = WorkflowDefinition("probe", 1, "readiness probe", (StepDefinition("only", "noop"),))


class WorkerProcess:
    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--name",
                name,
                "--data-dir",
                str(workdir / name),
                "--loglevel",
                "info",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def engine_env(settings: Settings, prefix: str, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        **settings.as_environment(),
        "STEPSTREAM_TOPIC_PREFIX": prefix,
        "STEPSTREAM_TOPIC_PARTITIONS": "4",
        **overrides,
    }
    return env


async def prepare(settings: Settings, *definitions: WorkflowDefinition) -> None:
    names = TopicNames.for_prefix(settings.topic_prefix)
    await declare_topics(settings.kafka_bootstrap_servers, names, settings.topic_partitions)
    for definition in (PROBE, *definitions):
        await register_definition(settings.kafka_bootstrap_servers, names.definitions, definition)


async def wait_until_ready(
    settings: Settings, workers: list[WorkerProcess], deadline: float
) -> None:
    """Ready means: a probe execution started now completes."""
    async with WorkflowClient(settings) as client:
        while True:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited:\n{worker.log_tail()}")
            execution_id = await client.start_workflow("probe", {}, "probe", "probe")
            try:
                await client.wait_for(execution_id, timeout=5)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    tails = "\n".join(w.log_tail() for w in workers)
                    raise TimeoutError(f"workers not ready in time:\n{tails}") from None


def definition(raw: dict[str, Any]) -> WorkflowDefinition:
    return build_definition(raw)


async def read_topic(
    settings: Settings,
    topic: str,
    until: Callable[[list[DecodedEvent]], bool] | None = None,
    timeout: float = 30.0,
) -> list[DecodedEvent]:
    """Every decodable event on the topic from the beginning up to its current end (or, with
    `until`, until the condition holds on what was read, within `timeout`)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        events: list[DecodedEvent] = []
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        events.append(CODEC.decode(record.value))
                    except EventCodecError:
                        continue
            if until is not None and until(events):
                return events
            if until is None and all([await consumer.position(p) >= ends[p] for p in partitions]):
                return events
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition on {topic} not met within {timeout}s")
    finally:
        await consumer.stop()


async def wait_for_checkpoints(
    settings: Settings, execution_ids: list[str], timeout: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Checkpoints of these executions once every one is terminal. The changelog write
    and the outcome event are separate produces, so the outcome may be seen first."""
    from streams.watch import read_checkpoints

    deadline = time.monotonic() + timeout
    while True:
        checkpoints = await read_checkpoints(settings)
        ours = {i: checkpoints.get(i) for i in execution_ids}
        if all(c and c["state"]["st"] in ("completed", "failed") for c in ours.values()):
            return ours  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError("checkpoints did not reach a terminal state in time")
