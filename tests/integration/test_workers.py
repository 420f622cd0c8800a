"""Several workers in one consumer group: they share the work, and a worker killed with
SIGKILL mid-run is replaced without losing or repeating any step."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.workers import (
    WorkerProcess,
    engine_env,
    prepare,
    read_topic,
    sleep_diamond,
    wait_for_checkpoints,
    wait_until_ready,
)

SLEEPY = sleep_diamond("sleepy-diamond", 0.3)


Group = tuple[Settings, dict[str, WorkerProcess]]


@pytest.fixture(scope="module")
def group(
    settings: Settings,
    kafka_bootstrap: str,
    run_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Group]:
    # Rate limiting on (per user 10 a minute, tenants unbounded): the count is shared.
    env = engine_env(
        settings,
        f"test-{run_token}-group",
        WORKFLOW_RATE_LIMIT_ENABLED="true",
        WORKFLOW_RATE_LIMIT_POINTS="10",
        WORKFLOW_RATE_LIMIT_TENANT_POINTS="100000",
    )
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, SLEEPY))
    workdir = tmp_path_factory.mktemp("group")
    workers = {"w1": WorkerProcess("group-w1", env, workdir)}
    try:
        asyncio.run(wait_until_ready(engine, list(workers.values()), 120))
        workers["w2"] = WorkerProcess("group-w2", env, workdir)
        asyncio.run(wait_until_both_work(engine, time.monotonic() + 120))
        yield engine, workers
    finally:
        for worker in workers.values():
            worker.stop()


async def wait_until_both_work(engine: Settings, deadline: float) -> None:
    """The group has rebalanced when steps of new executions run on both workers."""
    names = TopicNames.for_prefix(engine.topic_prefix)
    async with WorkflowClient(engine) as client:
        while time.monotonic() < deadline:
            ids = [
                await client.start_workflow("sleepy-diamond", {}, "t", f"w{time.time_ns()}-{n}")
                for n in range(8)
            ]
            await asyncio.gather(*(client.wait_for(i, timeout=60) for i in ids))
            done = await read_topic(engine, names.step_completed)
            if {e.record["worker"] for e in done if e.record["execution_id"] in ids} == {
                "group-w1",
                "group-w2",
            }:
                return
    raise TimeoutError("the second worker never took a share of the steps")


async def test_two_workers_in_one_group_both_execute_steps(
    group: Group,
) -> None:
    engine, _ = group
    names = TopicNames.for_prefix(engine.topic_prefix)
    async with WorkflowClient(engine) as client:
        ids = [await client.start_workflow("sleepy-diamond", {}, "t", f"s{n}") for n in range(24)]
        outcomes = await asyncio.gather(*(client.wait_for(i, timeout=120) for i in ids))
    assert {o.status for o in outcomes} == {"completed"}
    done = await read_topic(engine, names.step_completed)
    by_worker: dict[str, int] = defaultdict(int)
    for event in done:
        if event.record["execution_id"] in ids:
            by_worker[event.record["worker"]] += 1
    assert set(by_worker) == {"group-w1", "group-w2"}, by_worker


async def test_two_workers_share_one_rate_limit_count(group: Group) -> None:
    engine, _ = group
    async with WorkflowClient(engine) as client:
        # Tenants spread over partitions, so both workers' intakes take part.
        ids = [
            await client.start_workflow("sleepy-diamond", {}, f"tenant-{n}", f"user-{n}")
            for n in range(4)
            for _ in range(11)
        ]
        outcomes = await asyncio.gather(*(client.wait_for(i, timeout=120) for i in ids))
    for n in range(4):
        statuses = [o.status for o in outcomes[n * 11 : (n + 1) * 11]]
        assert statuses == ["completed"] * 10 + ["rejected"], (n, statuses)


async def test_a_worker_killed_mid_run_is_replaced_and_every_execution_completes_once(
    group: Group,
) -> None:
    engine, workers = group
    names = TopicNames.for_prefix(engine.topic_prefix)
    async with WorkflowClient(engine) as client:
        ids = [await client.start_workflow("sleepy-diamond", {}, "t", f"k{n}") for n in range(60)]
        await client.flush()
        # Kill once the victim has demonstrably taken part in these executions.
        await read_topic(
            engine,
            names.step_completed,
            timeout=60,
            until=lambda events: any(
                e.record["worker"] == "group-w2" and e.record["execution_id"] in ids for e in events
            ),
        )
        workers["w2"].kill()
        outcomes = await asyncio.gather(*(client.wait_for(i, timeout=240) for i in ids))
    assert {o.status for o in outcomes} == {"completed"}

    checkpoints = await wait_for_checkpoints(engine, ids)
    for execution_id, checkpoint in checkpoints.items():
        state = checkpoint["state"]
        assert state["st"] == "completed", execution_id
        assert state["done"] == 4
        # Each step completed exactly once, on its first attempt.
        assert {step: values[:3] for step, values in state["steps"].items()} == {
            step: ["completed", 0, 1] for step in "abcd"
        }, execution_id
    finished = await read_topic(engine, names.workflow_completed)
    event_ids: dict[str, set[str]] = defaultdict(set)
    for event in finished:
        if event.record["execution_id"] in ids:
            event_ids[event.record["execution_id"]].add(event.record["event_id"])
    # A re-emitted outcome after the takeover carries the same id, so consumers dedupe.
    assert all(len(event_ids[i]) == 1 for i in ids)
