"""What the intake refuses, and how: oversized and invalid starts are rejected with the
reason, an execution id is one tenant's only, and a record too large to send again still
reaches the dead-letter topic. After each of these the worker goes on working."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from stepstream.client.workflow_client import StartRefused, WorkflowClient
from stepstream.schemas.codec import CODEC
from stepstream.streams.engine import DEAD_LETTER_PAYLOAD_LIMIT
from stepstream.streams.events import event_id, now_ms
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    NOOP_DIAMOND,
    engine_env,
    prepare,
    read_topic,
    running_worker,
)


@pytest.fixture(scope="module")
def engine(
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    schema_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    env = engine_env(settings, f"test-{run_token}-door", DATABASE_URL=schema_database_url)
    engine_settings = Settings.from_env(env)
    asyncio.run(prepare(engine_settings, NOOP_DIAMOND))
    with running_worker(engine_settings, env, "door-w1", tmp_path_factory.mktemp("door")):
        yield engine_settings


@pytest.fixture
async def client(engine: Settings) -> AsyncIterator[WorkflowClient]:
    async with WorkflowClient(engine) as client:
        yield client


def start_request(execution_id: str, tenant: str, input_json: str = "{}") -> bytes:
    """A start as any producer could publish it, past the client's own checks."""
    return CODEC.encode(
        "WorkflowStartRequested",
        {
            "event_id": event_id(execution_id, "start-requested"),
            "execution_id": execution_id,
            "workflow_id": "noop-diamond",
            "workflow_version": 0,
            "tenant_id": tenant,
            "user_id": "user-1",
            "timestamp": now_ms(),
            "input_json": input_json,
        },
    )


async def rejections(engine: Settings, execution_id: str, count: int = 1) -> list[dict]:
    names = TopicNames.for_prefix(engine.topic_prefix)
    events = await read_topic(
        engine,
        names.workflow_rejected,
        until=lambda es: sum(e.record["execution_id"] == execution_id for e in es) >= count,
    )
    return [e.record for e in events if e.record["execution_id"] == execution_id]


async def assert_still_works(client: WorkflowClient, execution_id: str) -> None:
    await client.start_workflow("noop-diamond", {}, "tenant-a", "user-1", execution_id)
    assert (await client.wait_for(execution_id, timeout=60)).status == "completed"


async def test_a_start_of_about_one_megabyte_is_rejected_as_too_large(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    names = TopicNames.for_prefix(engine.topic_prefix)
    execution_id = f"{run_token}-huge"
    huge = json.dumps({"blob": "x" * 900_000})
    await client.send_raw(names.workflow_start, start_request(execution_id, "t", huge), key=b"t")
    (rejected,) = await rejections(engine, execution_id)
    assert rejected["code"] == "input_too_large"
    assert rejected["limit"] == f"{engine.max_input_bytes} bytes"
    assert "WORKFLOW_MAX_INPUT_BYTES" in rejected["reason"]
    await assert_still_works(client, f"{run_token}-after-huge")


async def test_the_client_refuses_an_oversized_input_before_publishing(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    with pytest.raises(StartRefused, match="WORKFLOW_MAX_INPUT_BYTES") as refused:
        await client.start_workflow(
            "noop-diamond", {"blob": "x" * engine.max_input_bytes}, "t", "u", f"{run_token}-big"
        )
    assert refused.value.code == "input_too_large"
    with pytest.raises(StartRefused, match="execution_id is empty"):
        await client.start_workflow("noop-diamond", {}, "t", "u", "")


async def test_a_record_too_large_to_send_again_is_dead_lettered_cut_short(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    names = TopicNames.for_prefix(engine.topic_prefix)
    key = f"{run_token}-big-poison".encode()
    garbage = b"\x00" + b"g" * 1_000_000
    await client.send_raw(names.step_completed, garbage, key=key)
    letters = await read_topic(
        engine,
        names.dead_letter,
        until=lambda events: any(e.record["key"] == key for e in events),
    )
    (letter,) = [e.record for e in letters if e.record["key"] == key]
    assert letter["payload"] == garbage[:DEAD_LETTER_PAYLOAD_LIMIT]
    assert letter["payload_size"] == len(garbage)
    assert letter["source_topic"] == names.step_completed and letter["offset"] >= 0
    await assert_still_works(client, f"{run_token}-after-big-poison")


@pytest.mark.parametrize(
    ("execution_id", "problem"),
    [("", "execution_id is empty"), ("a/b", "execution_id 'a/b' may hold only")],
)
async def test_invalid_ids_are_rejected_naming_the_field(
    engine: Settings, client: WorkflowClient, execution_id: str, problem: str
) -> None:
    names = TopicNames.for_prefix(engine.topic_prefix)
    await client.send_raw(names.workflow_start, start_request(execution_id, "t"), key=b"t")
    (rejected,) = await rejections(engine, execution_id)
    assert rejected["code"] == "invalid_request"
    assert rejected["reason"].startswith(problem)


async def test_an_execution_id_taken_by_another_tenant_is_rejected(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    execution_id = f"{run_token}-contested"
    await client.start_workflow("noop-diamond", {"n": 1}, "tenant-owner", "u", execution_id)
    first = await client.wait_for(execution_id, timeout=60)
    assert first.status == "completed" and first.record["tenant_id"] == "tenant-owner"
    # Another tenant picks the same id (a different partition of the start topic).
    await client.start_workflow("noop-diamond", {"n": 2}, "tenant-thief", "u", execution_id)
    (rejected,) = await rejections(engine, execution_id)
    assert rejected["code"] == "duplicate_execution_id"
    assert rejected["tenant_id"] == "tenant-thief"
    names = TopicNames.for_prefix(engine.topic_prefix)
    outcomes = await read_topic(engine, names.workflow_completed)
    ours = [e.record for e in outcomes if e.record["execution_id"] == execution_id]
    assert {(o["tenant_id"], o["event_id"]) for o in ours} == {
        ("tenant-owner", first.record["event_id"])
    }


def definition_record(workflow_id: str, body: dict) -> bytes:
    return CODEC.encode(
        "WorkflowDefinitionRegistered",
        {
            "event_id": f"{workflow_id}:1",
            "workflow_id": workflow_id,
            "workflow_version": 1,
            "definition_json": json.dumps(body),
            "timestamp": now_ms(),
        },
    )


async def test_definitions_published_past_register_are_checked_and_dead_lettered_once(
    engine: Settings, client: WorkflowClient, run_token: str
) -> None:
    names = TopicNames.for_prefix(engine.topic_prefix)
    cyclic = f"{run_token}-cyclic"
    strange = f"{run_token}-strange"
    steps = [
        {"id": "a", "type": "noop", "dependsOn": ["b"]},
        {"id": "b", "type": "noop", "dependsOn": ["a"]},
    ]
    records = {
        f"{run_token}-bytes": b"\x00random bytes",
        cyclic: definition_record(cyclic, {"id": cyclic, "version": 1, "steps": steps}),
        strange: definition_record(
            strange, {"id": strange, "version": 1, "steps": [{"id": "a", "type": "SEND_SMS"}]}
        ),
    }
    for key, value in records.items():
        await client.send_raw(names.definitions, value, key=key.encode())
    letters = await read_topic(
        engine,
        names.dead_letter,
        until=lambda es: {e.record["key"] for e in es} >= {k.encode() for k in records},
    )
    reasons = {
        e.record["key"].decode(): e.record["error"]
        for e in letters
        if e.record["key"] and e.record["key"].decode() in records
    }
    assert "CorruptEvent" in reasons[f"{run_token}-bytes"]
    assert "dependency cycle: a -> b -> a" in reasons[cyclic] or "b -> a -> b" in reasons[cyclic]
    assert "unknown step type 'SEND_SMS'" in reasons[strange]
    ours = [e for e in letters if e.record["key"] and e.record["key"].decode() in records]
    assert len(ours) == 3  # once each
    for workflow_id in (cyclic, strange):  # and the catalog never took them
        execution_id = await client.start_workflow(workflow_id, {}, "t", "u")
        assert (await client.wait_for(execution_id, timeout=60)).record["code"] == (
            "unknown_workflow"
        )


def test_the_command_line_refuses_an_oversized_input_before_publishing(
    engine: Settings, run_token: str
) -> None:
    import os
    import subprocess
    import sys

    big = json.dumps({"blob": "x" * 2_000})  # one argument may hold at most 128 KiB
    result = subprocess.run(
        [
            *(sys.executable, "-m", "stepstream", "start", "noop-diamond", "--tenant", "t"),
            *("--user", "u", "--execution-id", f"{run_token}-cli-big", "--input", big),
        ],
        env={**os.environ, **engine.as_environment(), "WORKFLOW_MAX_INPUT_BYTES": "1000"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "input_too_large: input is" in result.stderr
    assert "Traceback" not in result.stderr
