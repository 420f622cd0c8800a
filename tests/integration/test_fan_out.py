"""Dynamic fan-out on the real services: one instance per item of a list known at run
time, each an attempt of its own, the outputs in item order; empty lists, the cap,
failure policies, and a worker SIGKILLed in the middle of a fan-out."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.demo.data import seed
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import parse_definition
from tests.integration.console_helpers import console_process, signed_in
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

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("--steps", "tests.integration.fan_out_steps")
CAP = 500


def fan_out(workflow_id: str, **fields: Any) -> Any:
    """read -> each (forEach over the input's items) -> after."""
    each = {"id": "each", "type": "ITEM_ECHO", "forEach": "input.items", "dependsOn": ["read"]}
    return definition(
        {
            "id": workflow_id,
            "steps": [
                {"id": "read", "type": "noop"},
                {**each, **fields},
                {"id": "after", "type": "noop", "dependsOn": ["each"]},
            ],
        }
    )


FAN = fan_out("fan", maxParallel=20, **{"as": "tenant"})
KEEP_GOING = fan_out("fan-continue", failurePolicy="continue")
TOLERANT = fan_out("fan-tolerate", failurePolicy={"tolerate": "10%"})

FanOut = tuple[Settings, dict[str, str], Path]


@pytest.fixture(scope="module")
def fan(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> FanOut:
    env = engine_env(settings, f"test-{run_token}-fan", WORKFLOW_MAX_FOREACH_ITEMS=str(CAP))
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, FAN, KEEP_GOING, TOLERANT))
    return engine, env, tmp_path_factory.mktemp("fan")


@pytest.fixture
def worker(fan: FanOut) -> Iterator[WorkerProcess]:
    engine, env, workdir = fan
    process = WorkerProcess(f"fan-{time.time_ns()}", env, workdir, STEPS)
    try:
        asyncio.run(wait_until_ready(engine, [process], 120))
        yield process
    finally:
        process.stop()


async def run(engine: Settings, workflow_id: str, items: list[Any]) -> Outcome:
    async with WorkflowClient(engine) as client:
        execution_id = await client.start_workflow(workflow_id, {"items": items}, "t", "u")
        return await client.wait_for(execution_id, timeout=180)


def decisions(engine: Settings, execution_id: str) -> list[dict[str, Any]]:
    """The execution's attempt decisions, each once (a redelivered input announces its
    decisions again with the same event ids: a consumer drops those)."""
    names = TopicNames.for_prefix(engine.topic_prefix)
    outcomes = asyncio.run(read_topic(engine, names.step_outcomes))
    unique = {
        e.record["event_id"]: e.record
        for e in outcomes
        if e.name == "StepAttemptEnded" and e.record["execution_id"] == execution_id
    }
    return list(unique.values())


def test_each_item_runs_once_and_the_output_keeps_item_order(
    fan: FanOut, worker: WorkerProcess
) -> None:
    engine, env, _ = fan
    items = [{"tenant": f"t{n}"} for n in range(120)]
    outcome = asyncio.run(run(engine, "fan", items))
    assert outcome.status == "completed", outcome.record
    each = outcome.outputs["each"]
    assert [entry["item"] for entry in each] == items
    assert [entry["index"] for entry in each] == list(range(120))
    key = f"{outcome.execution_id}/each[7]/1"
    assert each[7]["key"] == key  # an instance's idempotency key: execution/step[index]/attempt
    ended = decisions(engine, outcome.execution_id)
    completed = Counter(d["step_id"] for d in ended if d["outcome"] == "completed")
    assert {f"each[{n}]" for n in range(120)} <= set(completed)
    assert all(completed[f"each[{n}]"] == 1 for n in range(120))
    (whole,) = [d for d in ended if d["step_id"] == "each"]
    assert json.loads(whole["output_json"]) == each
    explained = cli(env, "explain", outcome.execution_id)
    assert explained.returncode == 0, explained.stderr


def test_an_empty_list_completes_the_step_and_a_list_over_the_cap_fails_it(
    fan: FanOut, worker: WorkerProcess
) -> None:
    engine, _, _ = fan
    empty = asyncio.run(run(engine, "fan", []))
    assert empty.status == "completed"
    assert empty.outputs["each"] == [] and "after" in empty.outputs
    over = asyncio.run(run(engine, "fan", list(range(CAP + 1))))
    assert over.status == "failed"
    assert over.record["failed_step_id"] == "each"
    assert f"{CAP + 1} items, over the cap of {CAP}" in over.record["error"]
    assert "WORKFLOW_MAX_FOREACH_ITEMS" in over.record["error"]
    not_a_list = asyncio.run(run(engine, "fan", {"a": 1}))  # type: ignore[arg-type]
    assert not_a_list.status == "failed"
    assert "gave dict, not a list" in not_a_list.record["error"]


def test_failure_policies_fail_fast_continue_and_tolerate(
    fan: FanOut, worker: WorkerProcess
) -> None:
    engine, _, _ = fan
    items = [{"n": n, "fail": n in (3, 11)} for n in range(20)]
    fast = asyncio.run(run(engine, "fan", items))
    assert fast.status == "failed" and fast.record["failed_step_id"] == "each"
    assert fast.record["error"] in {
        f"an item failed: PermanentStepError: item {n} asked to fail" for n in (3, 11)
    }
    kept = asyncio.run(run(engine, "fan-continue", items))
    assert kept.status == "completed"
    each = kept.outputs["each"]
    assert each[3] == {"error": "PermanentStepError: item 3 asked to fail"}
    assert each[11] == {"error": "PermanentStepError: item 11 asked to fail"}
    assert [e["index"] for n, e in enumerate(each) if n not in (3, 11)] == [
        n for n in range(20) if n not in (3, 11)
    ]
    tolerated = asyncio.run(run(engine, "fan-tolerate", items))  # 2 of 20: at 10%
    assert tolerated.status == "completed"
    too_many = [{"n": n, "fail": n < 3} for n in range(20)]  # 3 of 20: over 10%
    failed = asyncio.run(run(engine, "fan-tolerate", too_many))
    assert failed.status == "failed"
    assert "3 of 20 items failed, over the 10% tolerated" in failed.record["error"]


def test_a_fan_out_survives_its_workers_sigkill_each_instance_completed_once(
    fan: FanOut,
) -> None:
    engine, env, workdir = fan
    first = WorkerProcess("fan-doomed", env, workdir, STEPS)
    asyncio.run(wait_until_ready(engine, [first], 120))
    items = [{"n": n} for n in range(CAP)]

    async def scenario() -> Outcome:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("fan", {"items": items}, "t", "u")
            names = TopicNames.for_prefix(engine.topic_prefix)

            async def halfway() -> bool:
                ended = await read_topic(engine, names.step_outcomes)
                mine = [e for e in ended if e.record.get("execution_id") == execution_id]
                return len(mine) >= CAP // 3

            await wait_until(halfway, 120, "a third of the instances reported")
            first.kill()
            second = WorkerProcess("fan-heir", env, workdir, STEPS)
            try:
                return await client.wait_for(execution_id, timeout=240)
            finally:
                second.stop()

    outcome = asyncio.run(scenario())
    assert outcome.status == "completed", outcome.record
    assert [entry["item"] for entry in outcome.outputs["each"]] == items
    ended = decisions(engine, outcome.execution_id)
    completed = Counter(d["step_id"] for d in ended if d["outcome"] == "completed")
    doubled = {step: n for step, n in completed.items() if n > 1}
    assert not doubled, f"instances decided twice: {doubled}"
    assert completed["each"] == 1  # the fan-out completed once


def test_the_console_shows_how_far_a_fan_out_is(
    fan: FanOut, worker: WorkerProcess, tmp_path: Path
) -> None:
    engine, env, _ = fan
    outcome = asyncio.run(run(engine, "fan-continue", [{"n": 1}, {"fail": True}, {"n": 3}]))
    assert outcome.status == "completed"
    with console_process(env, tmp_path / "console.log") as base:
        read = signed_in(engine, base, f"viewer-{outcome.execution_id}")

        def shown() -> str | None:
            html = read(f"/executions/{outcome.execution_id}")
            return html if 'class="fan-out"' in html else None

        html = asyncio.run(wait_until(shown, 30, "the fan-out's progress on its page"))
    assert "<strong>each</strong>: 3 of 3 items done, 1 failed" in html


def test_the_reference_workflow_notifies_every_resident_of_the_property(
    fan: FanOut, worker: WorkerProcess
) -> None:
    engine, _, _ = fan
    example = ROOT / "demo" / "examples" / "notify-residents.yaml"
    asyncio.run(prepare(engine, parse_definition(example.read_text())))

    async def scenario() -> tuple[Outcome, list[str]]:
        connection = await asyncpg.connect(engine.database_url)
        try:
            await seed(connection)
            lindenhof = await connection.fetchval(
                "SELECT id FROM properties WHERE name = 'Lindenhof'"
            )
            contacts = await connection.fetch(
                "SELECT contact FROM residents WHERE property_id = $1 ORDER BY id", lindenhof
            )
        finally:
            await connection.close()
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow(
                "notify-residents",
                {"property_id": lindenhof, "title": "Lift out of order"},
                "t",
                "u",
            )
            return await client.wait_for(execution_id, timeout=120), [r[0] for r in contacts]

    outcome, contacts = asyncio.run(scenario())
    assert outcome.status == "completed", outcome.record
    assert [n["recipient"] for n in outcome.outputs["notify"]] == contacts
    assert len(contacts) >= 3
