"""Task queues: a step with `queue:` is released on `<prefix>.tasks.<queue>`, where a
worker that knows only Kafka and the Avro schemas (examples/external_worker.py, no
stepstream import) does it; steps without a queue still run in the built-in executor.
Real broker, a real worker, the example external worker as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from stepstream.client import Outcome, WorkflowClient
from stepstream.schemas.codec import DecodedEvent
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    cli,
    engine_env,
    read_topic,
    running_worker,
)

ROOT = Path(__file__).resolve().parents[2]
MIXED = """\
id: mixed-diamond
version: 1
steps:
  - {id: a, type: noop}
  - {id: b, type: CHARGE_CARD, queue: billing, dependsOn: [a], config: {amount: 12},
     timeoutMs: 1500, retry: {maxAttempts: 5}}
  - {id: c, type: CHARGE_CARD, queue: billing, dependsOn: [a], config: {amount: 5},
     timeoutMs: 1500, retry: {maxAttempts: 5}}
  - {id: d, type: noop, dependsOn: [b, c]}
"""


# A fan-out whose instances run on the external worker, each a task of its own.
FAN_QUEUE = """\
id: fan-queue
version: 1
steps:
  - id: charge
    type: CHARGE_CARD
    queue: billing
    forEach: input.cards
    maxParallel: 3
    timeoutMs: 5000
    retry: {maxAttempts: 5}
"""

SLOW_QUEUE = """\
id: slow-queue
version: 1
steps:
  - id: remote
    type: CHARGE_CARD
    queue: nobody-yet
    timeoutMs: 2000
    retry: {maxAttempts: 20, initialBackoffMs: 200, jitter: 0}
"""

# A step longer than its timeout: it stays alive only by its worker's heartbeats.
LONG_QUEUE = """\
id: long-queue
version: 1
steps:
  - id: remote
    type: RENDER_REPORT
    queue: {queue}
    config: {{seconds: 4}}
    timeoutMs: 1500
    retry: {{maxAttempts: {attempts}, initialBackoffMs: 200, jitter: 0}}
"""


def external_worker(
    env: dict[str, str], queue: str, name: str, log: Path, types: str = ""
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, ROOT / "examples" / "external_worker.py"),
            *("--queue", queue, "--schemas", str(ROOT / "schemas"), "--name", name),
            *("--types", types),
        ],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def serving(
    env: dict[str, str], queue: str, name: str, log: Path, types: str = ""
) -> Iterator[subprocess.Popen]:
    """The example external worker on `queue` for the block, stopped cleanly after."""
    worker = external_worker(env, queue, name, log, types)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def released(settings: Settings, tasks: str, execution_id: str, attempt: int) -> None:
    """Wait until the coordinator has released this attempt of the execution's step on
    the queue's topic (an earlier attempt timed out)."""
    await read_topic(
        settings,
        tasks,
        until=lambda events: any(
            e.record["execution_id"] == execution_id and e.record["attempt"] == attempt
            for e in events
        ),
        timeout=60,
    )


engine_worker: list[WorkerProcess] = []


@pytest.fixture(scope="module")
def engine(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str]]]:
    env = engine_env(settings, f"test-{run_token}-queues")
    engine = Settings.from_env(env)
    workdir = tmp_path_factory.mktemp("queues")
    (workdir / "mixed.yaml").write_text(MIXED)
    registered = cli(env, "register", str(workdir / "mixed.yaml"))
    assert registered.returncode == 0, registered.stderr  # CHARGE_CARD is served elsewhere
    (workdir / "fan.yaml").write_text(FAN_QUEUE)
    assert cli(env, "register", str(workdir / "fan.yaml")).returncode == 0
    (workdir / "slow.yaml").write_text(SLOW_QUEUE)
    assert cli(env, "register", str(workdir / "slow.yaml")).returncode == 0
    for name, queue, attempts in (("long", "long-haul", 1), ("fragile", "fragile", 12)):
        definition = LONG_QUEUE.format(queue=queue, attempts=attempts).replace("long-queue", name)
        (workdir / f"{name}.yaml").write_text(definition)
        assert cli(env, "register", str(workdir / f"{name}.yaml")).returncode == 0
    external = external_worker(env, "billing", "billing-1", workdir / "external.log")
    try:
        steps = ("--steps", "tests.integration.worker_only_steps")
        with running_worker(engine, env, "queues-w1", workdir, *steps) as worker:
            engine_worker.append(worker)
            yield engine, env
    finally:
        external.terminate()
        external.wait(timeout=30)


def test_queue_steps_run_on_the_external_worker_and_the_rest_built_in(
    engine: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = engine

    async def run() -> list[dict[str, object]]:
        async with WorkflowClient(settings) as client:
            ids = [
                await client.start_workflow("mixed-diamond", {}, "t", "u", f"queues-{n}")
                for n in range(5)
            ]
            return [(await client.wait_for(i, timeout=90)).record for i in ids]

    records = asyncio.run(run())
    # The timers of b and c fall due together, after both completed: firing them must
    # change nothing (the steps are done) and stop nothing.
    names = TopicNames.for_prefix(settings.topic_prefix)
    asyncio.run(
        read_topic(
            settings,
            names.executions,
            until=lambda events: sum(e.name == "StepRetryDue" for e in events) >= 10,
            timeout=60,
        )
    )
    assert engine_worker[0].process.poll() is None, engine_worker[0].log_tail()
    letters = cli(env, "dead-letters", "-o", "json")
    assert json.loads(letters.stdout) == [], letters.stdout
    for record in records:
        outputs = json.loads(str(record["outputs_json"]))
        assert outputs["b"] == {"done_by": "billing-1", "step": "b", "config": {"amount": 12}}
        assert outputs["c"] == {"done_by": "billing-1", "step": "c", "config": {"amount": 5}}
        assert outputs["a"] == {"step": "a"} and outputs["d"] == {"step": "d"}  # built in


def test_the_queue_topic_has_the_configured_partitions(
    engine: tuple[Settings, dict[str, str]],
) -> None:
    settings, _ = engine
    topic = TopicNames.for_prefix(settings.topic_prefix).task_queue("billing")

    async def partitions() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            return len(described["partitions"])
        finally:
            await admin.close()

    assert asyncio.run(partitions()) == settings.topic_partitions


def test_a_bad_queue_name_is_refused_at_registration(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    _, env = engine
    (tmp_path / "bad.yaml").write_text(MIXED.replace("queue: billing", "queue: Billing.EU"))
    result = cli(env, "register", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    assert "steps[1].queue: must be lowercase letters" in result.stderr


def test_the_coordinator_times_out_a_queue_step_nobody_reports(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """No worker serves the queue at first: the coordinator times attempt 1 out after 2 s
    and releases attempt 2; a worker started then skips the expired attempt and does the
    current one, and the execution completes."""
    settings, env = engine
    tasks = TopicNames.for_prefix(settings.topic_prefix).task_queue("nobody-yet")

    async def run() -> dict[str, object]:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("slow-queue", {}, "t", "u", "queues-timeout")
            await client.flush()
            await released(settings, tasks, "queues-timeout", attempt=2)
            with serving(env, "nobody-yet", "late-1", tmp_path / "late.log"):
                return (await client.wait_for("queues-timeout", timeout=60)).record

    record = asyncio.run(run())
    outputs = json.loads(str(record["outputs_json"]))
    assert outputs["remote"]["done_by"] == "late-1"
    assert "skipped expired attempt 1" in (tmp_path / "late.log").read_text()
    described = cli(
        env, "describe", "queues-timeout", "-o", "json", until=lambda r: r.returncode == 0
    )
    assert described.returncode == 0, described.stderr


def test_a_malformed_report_is_dead_lettered_and_the_step_times_out(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """A worker that publishes bytes that are no report: the record goes to the
    dead-letter topic with the reason, the attempt times out, and the next one, done by a
    worker that works, completes the execution."""
    settings, env = engine
    names = TopicNames.for_prefix(settings.topic_prefix)
    tasks = names.task_queue("nobody-yet")

    async def run() -> str:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("slow-queue", {}, "t", "u", "queues-garbage")
            await client.flush()
            await client.send_raw(names.step_completed, b"\x00{oops", b"queues-garbage")
            await released(settings, tasks, "queues-garbage", attempt=2)
            with serving(env, "nobody-yet", "fixed-1", tmp_path / "fixed.log"):
                return (await client.wait_for("queues-garbage", timeout=60)).status

    assert asyncio.run(run()) == "completed"
    letters = cli(
        env,
        *("dead-letters", "--source-topic", names.step_completed, "-o", "json"),
        until=lambda r: r.returncode == 0 and json.loads(r.stdout) != [],
    )
    (letter,) = json.loads(letters.stdout)  # not decodable, so it names no execution
    assert letter["letter"].startswith(f"{names.step_completed}/")
    assert letter["error"].startswith("CorruptEvent: not an Avro single-object encoded event")


def reports_of(settings: Settings, execution_id: str, until: Any) -> list[DecodedEvent]:
    names = TopicNames.for_prefix(settings.topic_prefix)

    def mine(events: list[DecodedEvent]) -> list[DecodedEvent]:
        return [e for e in events if e.record["execution_id"] == execution_id]

    events = asyncio.run(
        read_topic(settings, names.step_completed, until=lambda e: until(mine(e)), timeout=60)
    )
    return mine(events)


def test_heartbeats_keep_a_step_longer_than_its_timeout_alive(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """The step takes 4 s, its timeout is 1.5 s and it has one attempt: only the example
    worker's heartbeats (every 0.5 s) keep the coordinator from failing it."""
    settings, env = engine

    async def run() -> Outcome:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("long", {}, "t", "u", "queues-long")
            return await client.wait_for("queues-long", timeout=60)

    with serving(env, "long-haul", "long-1", tmp_path / "long.log"):
        outcome = asyncio.run(run())
    assert outcome.status == "completed", outcome.record
    assert json.loads(str(outcome.record["outputs_json"]))["remote"]["done_by"] == "long-1"
    events = reports_of(
        settings, "queues-long", until=lambda mine: any(e.name == "StepCompleted" for e in mine)
    )
    assert sum(e.name == "StepHeartbeat" for e in events) >= 2
    assert [e.record["attempt"] for e in events if e.name == "StepCompleted"] == [1]


def test_a_worker_killed_mid_step_times_out_and_the_retry_completes(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """The external worker is killed while it heartbeats a 4 s step: the heartbeats stop,
    the coordinator times attempt 1 out and releases attempt 2, and a restarted worker
    completes it (its group join waits out the dead member's session, so it may be a
    later attempt). Attempt 1 is never reported; one completion is accepted."""
    settings, env = engine
    tasks = TopicNames.for_prefix(settings.topic_prefix).task_queue("fragile")
    first = external_worker(env, "fragile", "fragile-1", tmp_path / "first.log")
    try:
        asyncio.run(start(settings, "fragile", "queues-fragile"))
        reports_of(
            settings,
            "queues-fragile",
            until=lambda mine: any(e.name == "StepHeartbeat" for e in mine),
        )
    finally:
        first.kill()  # mid-step: it has sent a heartbeat and no report
        first.wait(timeout=30)

    asyncio.run(released(settings, tasks, "queues-fragile", attempt=2))

    async def outcome() -> Outcome:
        async with WorkflowClient(settings) as client:
            return await client.wait_for("queues-fragile", timeout=60)

    with serving(env, "fragile", "fragile-2", tmp_path / "second.log"):
        result = asyncio.run(outcome())
    assert result.status == "completed", result.record
    assert json.loads(str(result.record["outputs_json"]))["remote"]["done_by"] == "fragile-2"
    events = reports_of(
        settings, "queues-fragile", until=lambda mine: any(e.name == "StepCompleted" for e in mine)
    )
    completions = {
        e.record["event_id"]: e.record["attempt"] for e in events if e.name == "StepCompleted"
    }
    # Attempts released before the restarted worker joined its group are skipped as
    # expired; the one it completes is the only report there is.
    (attempt,) = completions.values()
    assert attempt >= 2


async def start(settings: Settings, workflow: str, execution_id: str) -> str:
    async with WorkflowClient(settings) as client:
        return await client.start_workflow(workflow, {}, "t", "u", execution_id)


def listed_workers(env: dict[str, str], until: Any) -> dict[str, dict[str, Any]]:
    result = cli(
        env,
        *("workers", "-o", "json"),
        until=lambda r: r.returncode == 0 and until({w["worker"] for w in json.loads(r.stdout)}),
    )
    assert result.returncode == 0, result.stderr
    return {w["worker"]: w for w in json.loads(result.stdout)}


def test_workers_announce_what_they_serve_and_register_reads_it(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """`stepstream workers` lists the stepstream worker (its step types, the worker-only
    package's among them) and the external workers (their queue, their types); `register`
    accepts a type only a worker knows, refuses a type a served queue's workers do not
    run, and warns about a queue nobody serves. A worker that stops cleanly is gone."""
    settings, env = engine
    with serving(env, "typed", "typed-1", tmp_path / "typed.log", "RENDER_PDF"):
        listed = listed_workers(env, until=lambda names: {"queues-w1", "typed-1"} <= names)
        assert listed["queues-w1"]["builtin_executor"] and listed["queues-w1"]["live"]
        assert {"noop", "WORKER_ONLY"} <= set(listed["queues-w1"]["step_types"])
        assert listed["typed-1"]["queues"] == ["typed"]
        assert listed["typed-1"]["step_types"] == ["RENDER_PDF"]
        assert listed["billing-1"]["step_types"] == []  # any type on its queue

        def register(name: str, body: str) -> subprocess.CompletedProcess[str]:
            (tmp_path / f"{name}.yaml").write_text(f"id: {name}\nversion: 1\nsteps:\n{body}")
            return cli(env, "register", str(tmp_path / f"{name}.yaml"))

        local = register("worker-only", "  - {id: a, type: WORKER_ONLY}\n")
        assert local.returncode == 0, local.stderr  # this command line has no such package
        wrong = register("fax", "  - {id: a, type: SEND_FAX, queue: typed}\n")
        assert wrong.returncode == 2
        assert "no live worker on queue 'typed' runs 'SEND_FAX' (RENDER_PDF)" in wrong.stderr
        right = register("pdf", "  - {id: a, type: RENDER_PDF, queue: typed}\n")
        assert right.returncode == 0, right.stderr
        later = register("later", "  - {id: a, type: ANYTHING, queue: nobody-here}\n")
        assert later.returncode == 0, later.stderr
        assert "warning: no live worker serves queue 'nobody-here' yet" in later.stderr
        documented = " ".join(cli(env, "register", "--help").stdout.split())
        assert "on a queue no live worker serves, any type is accepted, with a warning" in (
            documented
        )
        unknown = register("unknown", "  - {id: a, type: NOBODY_RUNS_THIS}\n")
        assert unknown.returncode == 2 and "WORKER_ONLY" in unknown.stderr  # listed as known
    listed_workers(env, until=lambda names: "typed-1" not in names)

    async def run() -> Outcome:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("worker-only", {}, "t", "u", "queues-worker-only")
            return await client.wait_for("queues-worker-only", timeout=60)

    outcome = asyncio.run(run())
    assert json.loads(str(outcome.record["outputs_json"])) == {"a": {"ran": "a"}}


def test_a_task_of_a_type_the_worker_does_not_run_fails_at_once_with_the_reason(
    engine: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """Registered while nobody served its queue, a step's type turns out to be one the
    queue's worker does not run: the worker answers with a StepFailed, retryable false
    (a retry would come back to the same group), and the workflow fails at once."""
    settings, env = engine
    (tmp_path / "fax.yaml").write_text(
        "id: fax-late\nversion: 1\nsteps:\n"
        "  - {id: a, type: SEND_FAX, queue: typed-late, retry: {maxAttempts: 5}}\n"
    )
    registered = cli(env, "register", str(tmp_path / "fax.yaml"))
    assert registered.returncode == 0, registered.stderr

    async def run() -> Outcome:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("fax-late", {}, "t", "u", "queues-unknown-type")
            return await client.wait_for("queues-unknown-type", timeout=60)

    with serving(env, "typed-late", "pdf-only", tmp_path / "pdf.log", "RENDER_PDF"):
        outcome = asyncio.run(run())
    assert outcome.status == "failed"
    assert outcome.record["error"] == (
        "UnknownStepType: worker pdf-only on queue typed-late runs RENDER_PDF"
    )


def test_a_fan_out_of_queue_steps_runs_each_item_on_the_external_worker(
    engine: tuple[Settings, dict[str, str]],
) -> None:
    settings, _ = engine

    async def run() -> Outcome:
        async with WorkflowClient(settings) as client:
            cards = [{"card": f"c{n}"} for n in range(12)]
            execution_id = await client.start_workflow("fan-queue", {"cards": cards}, "t", "u")
            return await client.wait_for(execution_id, timeout=120)

    outcome = asyncio.run(run())
    assert outcome.status == "completed", outcome.record
    charged = outcome.outputs["charge"]
    assert [entry["step"] for entry in charged] == [f"charge[{n}]" for n in range(12)]
    assert {entry["done_by"] for entry in charged} == {"billing-1"}
