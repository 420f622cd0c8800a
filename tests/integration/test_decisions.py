"""What every reader sees is what the coordinator decided. A queue step's reports arrive
as a worker in another language would send them, stale, twice, misrouted, not JSON, or
never; then each reader is asked: the public step-outcomes feed (as a downstream
consumer follows it), `describe` and `status` (PostgreSQL, via the persister), and the
live view `start --wait` and the console draw. Real broker, PostgreSQL, a real worker;
this test plays the queue's worker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from stepstream.client import WorkflowClient
from stepstream.client.watch import ExecutionView, ExecutionWatcher
from stepstream.schemas.codec import CODEC, DecodedEvent
from stepstream.streams.events import event_id, now_ms
from stepstream.streams.partitioner import partition_index
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import cli, engine_env, prepare, read_topic, running_worker

QUEUED = """\
id: decided
version: 1
steps:
  - id: a
    type: REMOTE_WORK
    queue: decisions
    timeoutMs: 1500
    retry: {maxAttempts: 2, initialBackoffMs: 100, jitter: 0}
  - {id: b, type: noop, dependsOn: [a]}
"""


@pytest.fixture(scope="module")
def engine(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str]]]:
    env = engine_env(settings, f"test-{run_token}-decisions")
    engine = Settings.from_env(env)
    workdir = tmp_path_factory.mktemp("decisions")
    (workdir / "decided.yaml").write_text(QUEUED)
    asyncio.run(prepare(engine))  # the topics, as a worker's start creates them
    with running_worker(engine, env, "decisions-w1", workdir):
        registered = cli(env, "register", str(workdir / "decided.yaml"))
        assert registered.returncode == 0, registered.stderr
        yield engine, env


class QueueWorker:
    """Takes tasks from the queue's topic and reports as the worker contract says."""

    def __init__(self, settings: Settings, client: WorkflowClient) -> None:
        self.settings, self.client = settings, client
        self.names = TopicNames.for_prefix(settings.topic_prefix)

    async def task(self, execution_id: str, attempt: int) -> dict[str, Any]:
        tasks = self.names.task_queue("decisions")

        def mine(events: list[DecodedEvent]) -> list[dict[str, Any]]:
            return [
                e.record
                for e in events
                if e.record["execution_id"] == execution_id and e.record["attempt"] == attempt
            ]

        events = await read_topic(self.settings, tasks, until=lambda e: bool(mine(e)), timeout=60)
        return mine(events)[0]

    async def report(
        self,
        task: dict[str, Any],
        *,
        output: str | None = '{"done": true}',
        failed: bool = False,
        worker: str = "java-worker",
        partition: int | None = None,
    ) -> None:
        kind = "step-failed" if failed else "step-completed"
        now = now_ms()
        record: dict[str, Any] = {
            **{k: task[k] for k in ("execution_id", "workflow_id", "workflow_version")},
            **{k: task[k] for k in ("tenant_id", "user_id", "step_id", "step_type", "attempt")},
            "event_id": event_id(task["execution_id"], kind, task["step_id"], task["attempt"]),
            "timestamp": now,
            "started_at": now - 5,
            "finished_at": now,
            "worker": worker,
        }
        if failed:
            record |= {"error_type": "Boom", "error_message": "no", "retryable": True}
            value = CODEC.encode("StepFailed", record)
        else:
            value = CODEC.encode("StepCompleted", {**record, "output_json": output})
        key = task["execution_id"].encode()
        await self.client.send_raw(self.names.step_completed, value, key, partition)


async def watched(
    settings: Settings,
    client: WorkflowClient,
    execution_id: str,
    drive: Callable[[], Awaitable[None]],
) -> ExecutionView:
    """Start the execution with the live view open (as `start --wait` does), drive its
    reports, and return what the view shows at the end."""
    view = ExecutionView(execution_id)
    async with ExecutionWatcher(settings, execution_id) as watcher:
        await client.start_workflow("decided", {}, "t", "u", execution_id)
        await client.flush()

        async def follow() -> None:
            async for event in watcher.events():
                view.apply(event)

        following = asyncio.create_task(follow())
        await drive()
        await asyncio.wait_for(following, timeout=60)
    return view


def stale(queue: QueueWorker, execution_id: str) -> Callable[[], Awaitable[None]]:
    """Attempt 1 is silent past its timeout; its report comes after attempt 2's release."""

    async def drive() -> None:
        first = await queue.task(execution_id, 1)
        second = await queue.task(execution_id, 2)  # attempt 1 timed out
        await queue.report(first, output='{"late": true}', worker="restarted-worker")
        await queue.report(second)

    return drive


def twice(queue: QueueWorker, execution_id: str) -> Callable[[], Awaitable[None]]:
    """The same report twice, then a failure report of the attempt that completed."""

    async def drive() -> None:
        task = await queue.task(execution_id, 1)
        await queue.report(task)
        await queue.report(task)
        await queue.report(task, failed=True, worker="confused-worker")

    return drive


def misrouted(
    queue: QueueWorker, execution_id: str, partitions: int
) -> Callable[[], Awaitable[None]]:
    """A report to the wrong partition (dead-lettered), then one where it belongs."""

    async def drive() -> None:
        task = await queue.task(execution_id, 1)
        home = partition_index(execution_id.encode(), partitions)
        elsewhere = (home + 1) % partitions
        await queue.report(task, worker="misrouting-worker", partition=elsewhere)
        await queue.report(task)

    return drive


def not_json(queue: QueueWorker, execution_id: str) -> Callable[[], Awaitable[None]]:
    async def drive() -> None:
        await queue.report(await queue.task(execution_id, 1), output="{not json")

    return drive


def never(queue: QueueWorker, execution_id: str) -> Callable[[], Awaitable[None]]:
    async def drive() -> None:
        await queue.task(execution_id, 2)  # both attempts released, nobody answers

    return drive


def shown(view: ExecutionView, step_id: str) -> tuple[str, int, str]:
    step = view.steps[step_id]
    return step.status, step.attempt, step.worker


def decisions_of(events: list[DecodedEvent], execution_id: str) -> list[tuple[Any, ...]]:
    return sorted(
        (r["step_id"], r["attempt"], r["outcome"], r["will_retry"], r["worker"], r["report"])
        for e in events
        if e.name == "StepAttemptEnded" and (r := e.record)["execution_id"] == execution_id
    )


def recorded(env: dict[str, str], command: str, execution_id: str, ended: str) -> dict[str, Any]:
    """`describe` / `status` -o json, once the persister has the execution's end."""

    def done(result: Any) -> bool:
        return result.returncode == 0 and json.loads(result.stdout)["status"] == ended

    answer = cli(env, command, execution_id, "-o", "json", until=done)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)  # type: ignore[no-any-return]


def test_every_reader_shows_the_coordinators_decision(
    engine: tuple[Settings, dict[str, str]], run_token: str
) -> None:
    settings, env = engine
    ids = {
        case: f"decided-{case}-{run_token}"
        for case in ("stale", "twice", "misrouted", "json", "never")
    }

    async def scenario() -> dict[str, ExecutionView]:
        async with WorkflowClient(settings) as client:
            queue = QueueWorker(settings, client)
            drives = {
                "stale": stale(queue, ids["stale"]),
                "twice": twice(queue, ids["twice"]),
                "misrouted": misrouted(queue, ids["misrouted"], settings.topic_partitions),
                "json": not_json(queue, ids["json"]),
                "never": never(queue, ids["never"]),
            }
            views = await asyncio.gather(
                *(watched(settings, client, ids[c], drive) for c, drive in drives.items())
            )
            return dict(zip(drives, views, strict=True))

    views = asyncio.run(scenario())
    names = TopicNames.for_prefix(settings.topic_prefix)
    outcomes = asyncio.run(
        read_topic(
            settings,
            names.step_outcomes,
            until=lambda events: all(
                len(decisions_of(events, ids[case])) >= count
                for case, count in (
                    ("stale", 4),
                    ("twice", 3),
                    ("misrouted", 2),
                    ("json", 1),
                    ("never", 2),
                )
            ),
            timeout=60,
        )
    )

    # 1. stale: attempt 1 timed out; its late report is ignored; attempt 2 counted.
    execution_id = ids["stale"]
    assert decisions_of(outcomes, execution_id) == [
        ("a", 1, "ignored", False, "restarted-worker", "completed"),
        ("a", 1, "timed_out", True, None, None),
        ("a", 2, "completed", False, "java-worker", None),
        ("b", 1, "completed", False, "decisions-w1", None),
    ]
    assert shown(views["stale"], "a") == ("completed", 2, "java-worker")
    described = recorded(env, "describe", execution_id, "completed")
    assert [(s["step_id"], s["attempt"], s["status"]) for s in described["steps"]] == [
        ("a", 1, "timed_out"),
        ("a", 2, "completed"),
        ("b", 1, "completed"),
    ]
    assert [
        (i["attempt"], i["report"], i["reason"], i["worker"]) for i in described["ignored_reports"]
    ] == [(1, "completed", "attempt 1 already ended (timed out)", "restarted-worker")]
    status = recorded(env, "status", execution_id, "completed")
    assert [(s["step_id"], s["status"], s["attempt"]) for s in status["steps"]] == [
        ("a", "completed", 2),
        ("b", "completed", 1),
    ]

    # 2. twice: one outcome; the copy is silent; the contradicting report is ignored.
    execution_id = ids["twice"]
    assert decisions_of(outcomes, execution_id) == [
        ("a", 1, "completed", False, "java-worker", None),
        ("a", 1, "ignored", False, "confused-worker", "failed"),
        ("b", 1, "completed", False, "decisions-w1", None),
    ]
    described = recorded(env, "describe", execution_id, "completed")
    assert [(s["step_id"], s["attempt"], s["status"]) for s in described["steps"]] == [
        ("a", 1, "completed"),
        ("b", 1, "completed"),
    ]
    assert [i["reason"] for i in described["ignored_reports"]] == [
        "attempt 1 already ended (completed)"
    ]
    assert shown(views["twice"], "a") == ("completed", 1, "java-worker")

    # 3. misrouted: dead-lettered, never an attempt of the execution.
    execution_id = ids["misrouted"]
    assert decisions_of(outcomes, execution_id) == [
        ("a", 1, "completed", False, "java-worker", None),
        ("b", 1, "completed", False, "decisions-w1", None),
    ]
    described = recorded(env, "describe", execution_id, "completed")
    assert [(s["step_id"], s["worker"]) for s in described["steps"]] == [
        ("a", "java-worker"),
        ("b", "decisions-w1"),
    ]
    assert described["ignored_reports"] == []
    letters = asyncio.run(
        read_topic(
            settings,
            names.dead_letter,
            until=lambda es: any(e.record.get("execution_id") == execution_id for e in es),
        )
    )
    assert [
        e.record["error"].split(":")[0]
        for e in letters
        if e.record.get("execution_id") == execution_id
    ] == ["misrouted"]

    # 4. not JSON: the attempt failed for good, with the reason, in every reader.
    execution_id = ids["json"]
    (decision,) = [
        e.record
        for e in outcomes
        if e.name == "StepAttemptEnded" and e.record["execution_id"] == execution_id
    ]
    assert (decision["outcome"], decision["will_retry"], decision["output_json"]) == (
        "failed",
        False,
        None,
    )
    assert decision["error"].startswith("InvalidOutput: output_json is not JSON")
    assert shown(views["json"], "a") == ("failed", 1, "java-worker")
    assert views["json"].outcome == "failed"
    status = recorded(env, "status", execution_id, "failed")
    assert [(s["step_id"], s["status"], s["attempt"]) for s in status["steps"]] == [
        ("a", "failed", 1)
    ]
    assert status["steps"][0]["error"].startswith("InvalidOutput")
    letters = asyncio.run(read_topic(settings, names.dead_letter))
    assert not [e for e in letters if e.record.get("execution_id") == execution_id]

    # 5. never: both attempts timed out; the step timed out for good, not "not finished".
    execution_id = ids["never"]
    assert decisions_of(outcomes, execution_id) == [
        ("a", 1, "timed_out", True, None, None),
        ("a", 2, "timed_out", False, None, None),
    ]
    assert shown(views["never"], "a") == ("timed_out", 2, "")
    status = recorded(env, "status", execution_id, "failed")
    assert [(s["step_id"], s["status"], s["attempt"]) for s in status["steps"]] == [
        ("a", "timed_out", 2)
    ]
    assert status["steps"][0]["error"] == "StepTimeout: no report or heartbeat within 1500 ms"
