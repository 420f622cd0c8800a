"""Human tasks on the real services: a task opens for its assignee and is listed, an
answer that does not match the form is refused with the schema error and completes
nothing (from the CLI, and from a raw producer past the client), the right answer
completes the step and is kept with who gave it, a timeout ends it as `onTimeout`
says, and cancel closes it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepstream.client import AnswerRefused
from stepstream.client.workflow_client import WorkflowClient
from stepstream.infra.human_tasks import HumanTaskRecord
from stepstream.schemas.codec import CODEC
from stepstream.streams.events import now_ms
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    cli,
    definition,
    engine_env,
    prepare,
    wait_until_ready,
)
from tests.waiting import wait_until

FORM = {
    "type": "object",
    "required": ["approved"],
    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
    "additionalProperties": False,
}
APPROVE = definition(
    {
        "id": "approve-repair",
        "steps": [
            {"id": "quote", "type": "noop"},
            {
                "id": "approval",
                "dependsOn": ["quote"],
                "human": {
                    "assignee": "input.manager",
                    "title": "Approve the repair quote",
                    "form": FORM,
                },
            },
            {
                "id": "order",
                "type": "noop",
                "dependsOn": ["approval"],
                "when": "steps.approval.approved == true",
            },
        ],
    }
)
HURRIED = definition(
    {
        "id": "hurried-approval",
        "steps": [
            {"id": "approval", "human": {"form": FORM, "timeout": "2s"}, "onTimeout": "continue"},
            {
                "id": "escalate",
                "type": "noop",
                "dependsOn": ["approval"],
                "when": "has(steps.approval.timed_out)",
            },
        ],
    }
)

Tasks = tuple[Settings, dict[str, str], Path]


@pytest.fixture(scope="module")
def tasks(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> Tasks:
    env = engine_env(settings, f"test-{run_token}-tasks")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, APPROVE, HURRIED))
    return engine, env, tmp_path_factory.mktemp("tasks")


@pytest.fixture(scope="module")
def worker(tasks: Tasks) -> Iterator[WorkerProcess]:
    engine, env, workdir = tasks
    process = WorkerProcess(f"tasks-{time.time_ns()}", env, workdir)
    try:
        asyncio.run(wait_until_ready(engine, [process], 120))
        yield process
    finally:
        process.stop()


async def task_opened(client: WorkflowClient, execution_id: str) -> HumanTaskRecord:
    async def found() -> HumanTaskRecord | None:
        task = await client.tasks.find(execution_id, "approval")
        return task if task is not None and task.status == "open" else None

    return await wait_until(found, 60, f"the task of {execution_id} open")


def test_a_task_opens_for_its_assignee_and_its_answer_completes_the_step(
    tasks: Tasks, worker: WorkerProcess
) -> None:
    engine, env, _ = tasks
    manager = f"ann-{uuid.uuid4().hex[:6]}"

    async def start() -> tuple[str, HumanTaskRecord]:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow(
                "approve-repair", {"manager": manager}, "t-a", "u"
            )
            return execution_id, await task_opened(client, execution_id)

    execution_id, task = asyncio.run(start())
    assert (task.assignee, task.title, task.form) == (manager, "Approve the repair quote", FORM)
    listed = cli(env, "tasks", "--tenant", "t-a", "--assignee", manager)
    assert f"{execution_id} approval (attempt 1) t-a for {manager}" in listed.stdout, listed
    assert execution_id not in cli(env, "tasks", "--tenant", "t-b").stdout, "tenant B sees none"
    explained = cli(env, "explain", execution_id)
    assert f"approval: waiting for an answer from {manager}, with no timeout" in explained.stdout

    wrong = cli(env, "tasks", "answer", execution_id, "approval", "--answer", '{"approved": "yes"}')
    assert wrong.returncode == 2, "no --by"
    wrong = cli(
        env,
        "tasks",
        "answer",
        execution_id,
        "approval",
        "--answer",
        '{"approved": "yes"}',
        "--by",
        manager,
    )
    assert wrong.returncode == 2, wrong
    assert "approved: 'yes' is not of type 'boolean'" in wrong.stderr, wrong.stderr

    right = cli(
        env,
        "tasks",
        "answer",
        execution_id,
        "approval",
        "--answer",
        '{"approved": true, "note": "go"}',
        "--by",
        manager,
    )
    assert right.returncode == 0, right.stderr

    async def outcome() -> dict[str, Any]:
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            ended = await client.result(execution_id, timeout=60)  # it may have ended already
            assert ended.status == "completed", ended
            return dict(ended.outputs)

    outputs = asyncio.run(outcome())
    assert outputs["approval"] == {"approved": True, "note": "go"}
    assert "order" in outputs, "the condition read the answer"
    described = cli(
        env,
        "describe",
        execution_id,
        "--output",
        "json",
        until=lambda r: '"answered"' in r.stdout,
    )
    record = json.loads(described.stdout)
    (answered,) = record["tasks"]
    assert answered["status"] == "answered" and answered["answered_by"] == manager
    assert answered["answer"] == {"approved": True, "note": "go"}
    assert answered["closed_at"] is not None
    attempt = next(s for s in record["steps"] if s["step_id"] == "approval")
    assert attempt["worker"] == f"human:{manager}"
    assert execution_id not in cli(env, "tasks", "--tenant", "t-a").stdout, "no longer open"


def test_an_answer_past_the_client_that_misses_the_form_is_ignored_with_the_reason(
    tasks: Tasks, worker: WorkerProcess
) -> None:
    engine, _, _ = tasks
    names = TopicNames.for_prefix(engine.topic_prefix)

    async def scenario() -> str:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow(
                "approve-repair", {"manager": "bob"}, "t-a", "u"
            )
            task = await task_opened(client, execution_id)
            with pytest.raises(AnswerRefused, match="is a required property"):
                await client.tasks.answer(execution_id, "approval", {"note": "hm"}, "bob")
            record = {  # what a producer in another language might write
                "event_id": f"raw-{uuid.uuid4()}",
                "execution_id": execution_id,
                "workflow_id": task.workflow_id,
                "workflow_version": task.workflow_version,
                "tenant_id": task.tenant_id,
                "user_id": "u",
                "timestamp": now_ms(),
                "step_id": "approval",
                "attempt": task.attempt,
                "answer_json": json.dumps({"approved": 1}),
                "answered_by": "mallory",
            }
            await client.send_raw(
                names.executions, CODEC.encode("TaskAnswered", record), execution_id.encode()
            )

            async def ignored() -> list[Any]:
                described = await client.describe(execution_id)
                return [] if described is None else described.ignored

            (report,) = await wait_until(ignored, 60, "the raw answer ignored")
            assert report.report == "answer" and report.worker == "human:mallory"
            assert "1 is not of type 'boolean'" in report.reason, report.reason
            still = await client.tasks.find(execution_id, "approval")
            assert still is not None and still.status == "open", "nothing completed"
            await client.tasks.answer(execution_id, "approval", {"approved": False}, "bob")
            ended = await client.wait_for(execution_id, timeout=60)
            assert ended.status == "completed"
            assert ended.outputs["approval"] == {"approved": False}
            assert "order" not in ended.outputs, "not approved: the order is skipped"
            with pytest.raises(AnswerRefused, match="not open"):
                await client.tasks.answer(execution_id, "approval", {"approved": True}, "bob")
            return execution_id

    asyncio.run(scenario())


def test_a_task_times_out_as_on_timeout_says_and_cancel_closes_one(
    tasks: Tasks, worker: WorkerProcess
) -> None:
    engine, env, _ = tasks

    async def scenario() -> tuple[str, str]:
        async with WorkflowClient(engine) as client:
            hurried = await client.start_workflow("hurried-approval", {}, "t-c", "u")
            ended = await client.wait_for(hurried, timeout=60)
            assert ended.status == "completed"
            assert ended.outputs["approval"]["timed_out"] is True
            assert "escalate" in ended.outputs
            waiting = await client.start_workflow("approve-repair", {"manager": "cy"}, "t-c", "u")
            await task_opened(client, waiting)
            await client.cancel(waiting, "withdrawn")
            return hurried, waiting

    hurried, waiting = asyncio.run(scenario())

    async def statuses() -> tuple[str | None, str | None]:
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            timed = await client.tasks.find(hurried, "approval")
            closed = await client.tasks.find(waiting, "approval")
            return (timed and timed.status), (closed and closed.status)

    async def settled() -> tuple[str | None, str | None] | None:
        found = await statuses()
        return found if found == ("timed_out", "closed") else None

    asyncio.run(wait_until(settled, 60, "the timed-out and the cancelled task closed"))
    assert waiting not in cli(env, "tasks", "--tenant", "t-c").stdout
