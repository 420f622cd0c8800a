"""Durable timers on the real services: a wait step holds no worker, survives its
worker's SIGKILL, fires once and never early, reads its instant from the data, and
stops when the execution is cancelled."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import TopicPartition

from stepstream.client.watch import changelog_topic, reader, rewind
from stepstream.client.workflow_client import WorkflowClient
from stepstream.schemas.codec import DecodedEvent
from stepstream.streams.events import now_ms
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows.durations import iso
from tests.integration.workers import (
    WorkerProcess,
    cli,
    definition,
    engine_env,
    prepare,
    read_topic,
    wait_until_ready,
)
from tests.waiting import wait_until

TIMED = definition(
    {
        "id": "timed",
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "t", "wait": {"for": "3s"}, "dependsOn": ["a"]},
            {"id": "b", "type": "noop", "dependsOn": ["t"]},
        ],
    }
)
UNTIL = definition({"id": "until", "steps": [{"id": "u", "wait": {"until": "input.at"}}]})
LONG = definition({"id": "long-wait", "steps": [{"id": "t", "wait": {"for": "1h"}}]})

Waits = tuple[Settings, dict[str, str], Path]


@pytest.fixture(scope="module")
def waits(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> Waits:
    env = engine_env(settings, f"test-{run_token}-waits")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, TIMED, UNTIL, LONG))
    return engine, env, tmp_path_factory.mktemp("waits")


@pytest.fixture
def worker(waits: Waits) -> Iterator[WorkerProcess]:
    engine, env, workdir = waits
    process = WorkerProcess(f"waits-{time.time_ns()}", env, workdir)
    try:
        asyncio.run(wait_until_ready(engine, [process], 120))
        yield process
    finally:
        process.stop()


async def timer_index(settings: Settings) -> dict[str, dict[str, Any]]:
    """The timer keys the executions table's changelog holds now (tombstones applied)."""
    topic = changelog_topic(settings)
    consumer = reader(settings)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await rewind(consumer, partitions)
        keys: dict[str, dict[str, Any]] = {}
        for partition in partitions:
            while await consumer.position(partition) < ends[partition]:
                for message in (await consumer.getmany(partition, timeout_ms=1000)).get(
                    partition, []
                ):
                    if message.key is None or not message.key.startswith(b"#timer/"):
                        continue
                    if message.value:
                        keys[message.key.decode()] = json.loads(message.value)
                    else:
                        keys.pop(message.key.decode(), None)
        return keys
    finally:
        await consumer.stop()


async def armed_for(settings: Settings, ids: list[str], timeout: float = 60) -> dict[str, Any]:
    """Once every one of these executions has a timer in the index: the index."""

    async def armed() -> dict[str, Any] | None:
        index = await timer_index(settings)
        return index if all(any(k.endswith(f"/{i}") for k in index) for i in ids) else None

    return cast(dict[str, Any], await wait_until(armed, timeout, "every timer armed"))


def decisions(events: list[DecodedEvent], execution_id: str, step_id: str) -> list[dict[str, Any]]:
    return [
        e.record
        for e in events
        if e.name == "StepAttemptEnded"
        and e.record["execution_id"] == execution_id
        and e.record["step_id"] == step_id
    ]


def test_a_timer_survives_its_workers_sigkill_and_fires_once_never_early(waits: Waits) -> None:
    engine, env, workdir = waits
    names = TopicNames.for_prefix(engine.topic_prefix)
    first = WorkerProcess("waits-doomed", env, workdir)
    asyncio.run(wait_until_ready(engine, [first], 120))

    async def scenario() -> tuple[list[str], list[str]]:
        async with WorkflowClient(engine) as client:
            ids = [await client.start_workflow("timed", {}, "t", f"u{n}") for n in range(20)]
            await client.flush()
            await armed_for(engine, ids)
            first.kill()  # every timer armed, none due yet: the index is all that holds them
            second = WorkerProcess("waits-heir", env, workdir)
            try:
                outcomes = await asyncio.gather(*(client.wait_for(i, timeout=180) for i in ids))
            finally:
                second.stop()
            return ids, [o.status for o in outcomes]

    ids, statuses = asyncio.run(scenario())
    assert statuses == ["completed"] * len(ids)
    outcomes = asyncio.run(read_topic(engine, names.step_outcomes))
    ready = asyncio.run(read_topic(engine, names.step_ready))
    for execution_id in ids:
        (fired,) = decisions(outcomes, execution_id, "t")  # once
        output = json.loads(fired["output_json"])
        assert fired["outcome"] == "completed"
        assert output["due_at_ms"] == fired["started_at"] + 3000  # released, plus 3 s
        assert output["fired_at_ms"] >= output["due_at_ms"]  # never early
        assert output["due_at"] == iso(output["due_at_ms"])
        (b_ready,) = [
            e.record
            for e in ready
            if e.record["execution_id"] == execution_id and e.record["step_id"] == "b"
        ]
        assert b_ready["timestamp"] >= output["due_at_ms"]
        assert not [
            e
            for e in ready
            if e.record["execution_id"] == execution_id and e.record["step_id"] == "t"
        ], "a wait step is never sent to a worker"
    left = asyncio.run(timer_index(engine))
    assert not [k for k in left if k.rsplit("/", 1)[-1] in ids], "fired timers leave the index"


def test_until_reads_its_instant_from_the_data(waits: Waits, worker: WorkerProcess) -> None:
    engine, _, _ = waits
    names = TopicNames.for_prefix(engine.topic_prefix)
    soon = now_ms() + 2000

    async def scenario() -> dict[str, str]:
        async with WorkflowClient(engine) as client:
            inputs = {"soon": {"at": iso(soon)}, "past": {"at": 1000}, "bad": {"at": "soon"}}
            ids = {k: await client.start_workflow("until", v, "t", "u") for k, v in inputs.items()}
            outcomes = {k: await client.wait_for(i, timeout=60) for k, i in ids.items()}
            assert outcomes["bad"].status == "failed"
            assert outcomes["bad"].record["error"].startswith("WaitError: until input.at: ")
            assert {outcomes["soon"].status, outcomes["past"].status} == {"completed"}
            return ids

    ids = asyncio.run(scenario())
    outcomes = asyncio.run(read_topic(engine, names.step_outcomes))
    (soon_fired,) = decisions(outcomes, ids["soon"], "u")
    output = json.loads(soon_fired["output_json"])
    assert output["due_at_ms"] == soon and output["fired_at_ms"] >= soon
    (past_fired,) = decisions(outcomes, ids["past"], "u")
    assert json.loads(past_fired["output_json"])["due_at_ms"] == 1000  # due already: at once


def test_cancel_stops_a_wait_and_explain_says_what_it_waits_for(
    waits: Waits, worker: WorkerProcess
) -> None:
    engine, env, _ = waits

    async def start() -> str:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("long-wait", {}, "t", "u")
            await client.flush()
            await armed_for(engine, [execution_id])
            return execution_id

    execution_id = asyncio.run(start())
    explained = cli(env, "explain", execution_id, until=lambda r: "timer" in r.stdout)
    assert "t: waiting for its timer, due at" in explained.stdout, explained.stdout
    cancelled = cli(env, "cancel", execution_id, "--reason", "not needed", "--wait")
    assert cancelled.returncode == 0, cancelled.stderr
    index = asyncio.run(timer_index(engine))
    assert not [k for k in index if k.endswith(f"/{execution_id}")], "a cancelled wait is disarmed"


def test_register_refuses_a_bad_wait_with_its_location(waits: Waits, tmp_path: Path) -> None:
    _, env, _ = waits
    path = tmp_path / "bad-wait.yaml"
    path.write_text(
        "id: bad-wait\nsteps:\n"
        "  - {id: a, wait: {for: 2 hours}}\n"
        "  - {id: b, wait: {until: 'steps.c.at'}, dependsOn: [a]}\n"
        "  - {id: c, type: noop, wait: {for: 1s}, queue: q}\n"
    )
    result = cli(env, "register", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "steps[0].wait.for: not a duration such as 30s" in out, out
    assert "steps[1] (b).wait.until: reads step 'c', which it does not run after" in out, out
    assert "steps[2].wait: a wait step takes no 'queue'" in out, out
    assert "steps[2] (c).type: a wait step's type is 'wait'" in out, out
