"""Step reports as any worker may send them (what an external worker in another language
would publish): one whose output is not JSON fails its attempt with the reason instead of
leaving the step running, and one for an attempt that is not the current one is ignored,
counted and logged. Real broker, a real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepstream.client import WorkflowClient
from stepstream.schemas.codec import CODEC, DecodedEvent
from stepstream.streams.partitioner import partition_index
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    definition,
    engine_env,
    prepare,
    read_topic,
    running_worker,
)

SLOW_THEN_DONE = definition(
    {
        "id": "slow-then-done",
        "version": 1,
        "steps": [
            {"id": "a", "type": "sleep", "config": {"seconds": 3}},
            {"id": "b", "type": "noop", "dependsOn": ["a"]},
        ],
    }
)


@pytest.fixture(scope="module")
def engine(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    env = engine_env(settings, f"test-{run_token}-reports")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, SLOW_THEN_DONE))
    with running_worker(engine, env, "reports-w1", tmp_path_factory.mktemp("reports")) as worker:
        yield engine, worker


async def forge_report(
    settings: Settings, execution_id: str, attempt: int, output: str, partition: int | None = None
) -> str:
    """Start an execution, wait for its step a to be released, and publish a report of
    `attempt` for it (to `partition`, or where its key belongs), as a worker of another
    language would; return the outcome."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    async with WorkflowClient(settings) as client:
        await client.start_workflow("slow-then-done", {}, "t", "u", execution_id)
        await client.flush()
        ready = await read_topic(
            settings,
            names.step_ready,
            until=lambda events: any(e.record["execution_id"] == execution_id for e in events),
        )
        released = next(e.record for e in ready if e.record["execution_id"] == execution_id)
        now = int(time.time() * 1000)
        report: dict[str, Any] = {
            **{k: released[k] for k in ("execution_id", "workflow_id", "workflow_version")},
            **{k: released[k] for k in ("tenant_id", "user_id", "step_id", "step_type")},
            "event_id": f"forged-{execution_id}-{attempt}",
            "timestamp": now,
            "attempt": attempt,
            "output_json": output,
            "started_at": now,
            "finished_at": now,
            "worker": "another-language",
        }
        value = CODEC.encode("StepCompleted", report)
        await client.send_raw(names.step_completed, value, execution_id.encode(), partition)
        outcome = await client.wait_for(execution_id, timeout=60)
        return f"{outcome.status}: {outcome.record.get('error') or ''}"


def test_an_output_that_is_not_json_fails_the_attempt_with_the_reason(
    engine: tuple[Settings, WorkerProcess],
) -> None:
    settings, _ = engine
    outcome = asyncio.run(forge_report(settings, "reports-bad-json", 1, "{not json"))
    assert outcome.startswith("failed: InvalidOutput: output_json is not JSON"), outcome


def test_a_report_of_another_attempt_is_ignored_and_logged(
    engine: tuple[Settings, WorkerProcess], tmp_path: Path
) -> None:
    settings, worker = engine
    outcome = asyncio.run(forge_report(settings, "reports-other-attempt", 7, '{"x": 1}'))
    assert outcome == "completed: "  # the real attempt 1 completed it, 3 s later
    expected = (
        "ignored the completed report of reports-other-attempt/a attempt 7:"
        " not the current attempt (current 1)"
    )
    assert expected in worker.log_path.read_text()


def test_a_report_published_to_another_partition_is_dead_lettered_with_the_reason(
    engine: tuple[Settings, WorkerProcess],
) -> None:
    settings, _ = engine
    execution_id = "reports-misrouted"
    home = partition_index(execution_id.encode(), settings.topic_partitions)
    elsewhere = (home + 1) % settings.topic_partitions
    outcome = asyncio.run(forge_report(settings, execution_id, 1, '{"x": 1}', elsewhere))
    assert outcome == "completed: "  # the real attempt 1 completed it, 3 s later
    names = TopicNames.for_prefix(settings.topic_prefix)

    def letters(events: list[DecodedEvent]) -> list[DecodedEvent]:
        return [e for e in events if e.record.get("execution_id") == execution_id]

    events = asyncio.run(read_topic(settings, names.dead_letter, until=lambda e: bool(letters(e))))
    (letter,) = letters(events)
    assert letter.record["error"] == (
        f"misrouted: key '{execution_id}' belongs in partition {home} by Kafka's default "
        f"partitioner (murmur2), not {elsewhere}; publish reports keyed by execution_id with "
        "the default partitioner"
    )
