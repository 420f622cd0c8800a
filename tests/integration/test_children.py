"""Sub-workflows on the real services: a step starts a child of the same tenant and takes
its outputs; a failed child is retried as a new child; cancelling the parent cancels
the child; nesting is bounded; describe links parent and child both ways."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepstream.client.watch import read_checkpoint
from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.streams.settings import Settings
from tests.integration.console_helpers import console_process, signed_in
from tests.integration.workers import (
    WorkerProcess,
    cli,
    definition,
    engine_env,
    prepare,
    wait_until_ready,
)
from tests.waiting import wait_until

BLOCK = definition(
    {
        "id": "assign-block",
        "steps": [
            {"id": "pick", "type": "noop"},
            {"id": "notify", "type": "noop", "dependsOn": ["pick"]},
        ],
    }
)
PARENT = definition(
    {
        "id": "maintenance",
        "steps": [
            {"id": "create", "type": "noop"},
            {
                "id": "assign",
                "workflow": {"id": "assign-block", "input": {"request": "steps.create.step"}},
                "dependsOn": ["create"],
            },
            {"id": "close", "type": "noop", "dependsOn": ["assign"]},
        ],
    }
)
BROKEN = definition({"id": "broken-block", "steps": [{"id": "x", "type": "fail"}]})
RETRIED = definition(
    {
        "id": "retried",
        "steps": [
            {"id": "call", "workflow": {"id": "broken-block"}, "retry": {"maxAttempts": 2}},
        ],
    }
)
SLOW = definition({"id": "slow-block", "steps": [{"id": "nap", "wait": {"for": "1h"}}]})
WAITS = definition(
    {"id": "waits-on-child", "steps": [{"id": "call", "workflow": {"id": "slow-block"}}]}
)
# outer -> middle -> inner: with WORKFLOW_MAX_NESTING_DEPTH=1, middle's child is too deep.
INNER = definition({"id": "inner", "steps": [{"id": "x", "type": "noop"}]})
MIDDLE = definition({"id": "middle", "steps": [{"id": "call", "workflow": {"id": "inner"}}]})
OUTER = definition({"id": "outer", "steps": [{"id": "call", "workflow": {"id": "middle"}}]})

Engine = tuple[Settings, dict[str, str], Path]


@pytest.fixture(scope="module")
def engine(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    env = engine_env(settings, f"test-{run_token}-children", WORKFLOW_MAX_NESTING_DEPTH="1")
    engine = Settings.from_env(env)
    definitions = (BLOCK, PARENT, BROKEN, RETRIED, SLOW, WAITS, INNER, MIDDLE, OUTER)
    asyncio.run(prepare(engine, *definitions))
    return engine, env, tmp_path_factory.mktemp("children")


@pytest.fixture(scope="module")
def worker(engine: Engine) -> Iterator[WorkerProcess]:
    settings, env, workdir = engine
    process = WorkerProcess(f"children-{time.time_ns()}", env, workdir)
    try:
        asyncio.run(wait_until_ready(settings, [process], 120))
        yield process
    finally:
        process.stop()


async def run(settings: Settings, workflow_id: str, execution_id: str) -> Outcome:
    async with WorkflowClient(settings) as client:
        await client.start_workflow(workflow_id, {"who": "ann"}, "t", "u", execution_id)
        return await client.wait_for(execution_id, timeout=120)


def described(env: dict[str, str], execution_id: str, key: str) -> dict[str, object]:
    """`describe -o json` once the persister has recorded `key` for the execution."""

    def shows(result: object) -> bool:
        return getattr(result, "returncode", 1) == 0 and f'"{key}"' in getattr(result, "stdout", "")

    result = cli(env, "describe", execution_id, "-o", "json", until=shows)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_step_runs_a_child_and_takes_its_outputs(engine: Engine, worker: WorkerProcess) -> None:
    settings, env, _ = engine
    parent_id = f"parent-{time.time_ns()}"
    outcome = asyncio.run(run(settings, "maintenance", parent_id))
    assert outcome.status == "completed", outcome.record
    child_id = f"{parent_id}.assign.1"
    assert outcome.outputs["assign"] == {"pick": {"step": "pick"}, "notify": {"step": "notify"}}
    parent = described(env, parent_id, "children")
    assert [c["child_execution_id"] for c in parent["children"]] == [child_id]  # type: ignore[attr-defined]
    child = described(env, child_id, "parent")
    assert child["parent"]["parent_execution_id"] == parent_id  # type: ignore[index]
    assert child["input"] == {"request": "create"}
    assert child["tenant_id"] == "t"
    printed = cli(env, "describe", parent_id)
    assert f"child:            {child_id} (assign-block), started by step assign" in printed.stdout


def test_a_failed_child_is_retried_as_a_new_child(engine: Engine, worker: WorkerProcess) -> None:
    settings, env, _ = engine
    parent_id = f"retried-{time.time_ns()}"
    outcome = asyncio.run(run(settings, "retried", parent_id))
    assert outcome.status == "failed"
    assert outcome.record["error"].startswith(f"ChildFailed: {parent_id}.call.2 failed: step x")
    parent = described(env, parent_id, "children")

    def both_recorded() -> dict[str, object] | None:
        record = described(env, parent_id, "children")
        return record if len(record["children"]) == 2 else None  # type: ignore[arg-type]

    parent = asyncio.run(wait_until(both_recorded, 60, "both children recorded"))
    children = [c["child_execution_id"] for c in parent["children"]]  # type: ignore[attr-defined]
    assert children == [f"{parent_id}.call.1", f"{parent_id}.call.2"]


def test_cancelling_the_parent_cancels_its_child(engine: Engine, worker: WorkerProcess) -> None:
    settings, _, _ = engine
    parent_id = f"cancelled-{time.time_ns()}"
    child_id = f"{parent_id}.call.1"

    async def scenario() -> tuple[Outcome, Outcome]:
        async with WorkflowClient(settings) as client:
            await client.start_workflow("waits-on-child", {}, "t", "u", parent_id)

            async def child_running() -> bool:
                return await read_checkpoint(settings, child_id) is not None

            await wait_until(child_running, 60, "the child started")
            run_no = await client.cancel(parent_id, "the tenant withdrew it")
            parent = await client.wait_for(parent_id, timeout=60, run=run_no)
            child = await client.wait_for(child_id, timeout=60, run=1)
            return parent, child

    parent, child = asyncio.run(scenario())
    assert parent.status == "cancelled"
    assert child.status == "cancelled"
    assert f"its parent {parent_id} was cancelled" in child.record["reason"]


def test_a_child_nested_too_deep_is_refused_and_fails_its_parents_step(
    engine: Engine, worker: WorkerProcess
) -> None:
    settings, _, _ = engine
    outer_id = f"outer-{time.time_ns()}"
    outcome = asyncio.run(run(settings, "outer", outer_id))
    assert outcome.status == "failed"
    error = outcome.record["error"]
    assert f"ChildFailed: {outer_id}.call.1 failed: step call failed: ChildFailed" in error
    assert (
        "rejected: nesting_too_deep: a child at depth 2, over WORKFLOW_MAX_NESTING_DEPTH (1)"
        in (error)
    )


def test_register_refuses_a_workflow_that_calls_itself(engine: Engine, tmp_path: Path) -> None:
    _, env, _ = engine
    path = tmp_path / "loop.yaml"
    path.write_text("id: loop\nsteps:\n  - {id: again, workflow: {id: loop}}\n")
    refused = cli(env, "register", str(path))
    assert refused.returncode == 2
    assert "steps[0] (again).workflow.id" in refused.stderr + refused.stdout
    assert "loop calls itself: loop -> loop" in refused.stderr + refused.stdout


def test_the_console_links_parent_and_child_both_ways(
    engine: Engine, worker: WorkerProcess, tmp_path: Path
) -> None:
    settings, env, _ = engine
    parent_id = f"linked-{time.time_ns()}"
    child_id = f"{parent_id}.assign.1"
    assert asyncio.run(run(settings, "maintenance", parent_id)).status == "completed"
    described(env, child_id, "parent")  # recorded by the persister
    with console_process(env, tmp_path / "console.log") as base:
        read = signed_in(settings, base, f"viewer-{parent_id}")

        def page(execution_id: str, wanted: str) -> str | None:
            html = read(f"/executions/{execution_id}")
            return html if wanted in html else None

        parent_page = asyncio.run(
            wait_until(lambda: page(parent_id, child_id), 30, "the child on the parent's page")
        )
        assert f'started <a href="/executions/{child_id}">{child_id}</a> (assign-block)' in (
            parent_page
        )
        child_page = page(child_id, parent_id)
        assert child_page is not None
        assert f'started by <a href="/executions/{parent_id}">{parent_id}</a>, step assign' in (
            child_page
        )


def test_register_refuses_a_call_cycle_through_registered_workflows(
    engine: Engine, tmp_path: Path
) -> None:
    _, env, _ = engine
    token = time.time_ns()
    ping = tmp_path / "ping.yaml"
    ping.write_text(f"id: ping-{token}\nsteps:\n  - {{id: call, workflow: {{id: pong-{token}}}}}\n")
    assert cli(env, "register", str(ping)).returncode == 0  # pong is not registered yet
    pong = tmp_path / "pong.yaml"
    pong.write_text(f"id: pong-{token}\nsteps:\n  - {{id: back, workflow: {{id: ping-{token}}}}}\n")
    refused = cli(env, "register", str(pong))
    assert refused.returncode == 2
    assert (
        f"steps[0] (back).workflow.id: a call cycle: pong-{token} -> ping-{token} -> pong-{token}"
        in refused.stderr
    )
