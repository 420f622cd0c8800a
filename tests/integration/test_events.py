"""Events from outside on the real services: correlated by business key across
partitions, held when they come early, applied once, kept inside their tenant, sent to
an execution by its id, timed out as `onTimeout` says, and listed when nothing took them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepstream.client.watch import read_changelog
from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows.correlation import Address, Correlation
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

ACCEPT = definition(
    {
        "id": "accept",
        "steps": [
            {"id": "notify", "type": "noop"},
            {
                "id": "accepted",
                "waitFor": {"event": "technician-accepted", "correlationKey": "input.request"},
                "dependsOn": ["notify"],
            },
            {"id": "assign", "type": "noop", "dependsOn": ["accepted"]},
        ],
    }
)
ESCALATE = definition(
    {
        "id": "escalate",
        "steps": [
            {
                "id": "accepted",
                "waitFor": {
                    "event": "technician-accepted",
                    "correlationKey": "input.request",
                    "timeout": "2s",
                },
                "onTimeout": "continue",
            },
            {
                "id": "reassign",
                "type": "noop",
                "dependsOn": ["accepted"],
                "when": "steps.accepted.timed_out == true",
            },
        ],
    }
)
STRICT = definition(
    {
        "id": "strict",
        "steps": [
            {"id": "visit", "waitFor": {"event": "visit-report", "timeout": "2s"}},
            {"id": "close", "type": "noop", "dependsOn": ["visit"]},
        ],
    }
)
OPTIONAL = definition(
    {
        "id": "optional",
        "steps": [
            {
                "id": "visit",
                "waitFor": {"event": "visit-report", "timeout": "2s"},
                "onTimeout": "skip",
            },
            {"id": "close", "type": "noop", "dependsOn": ["visit"], "trigger": "all_done"},
        ],
    }
)

Events = tuple[Settings, dict[str, str], Path]


@pytest.fixture(scope="module")
def events(settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory) -> Events:
    env = engine_env(settings, f"test-{run_token}-events", STEPSTREAM_EVENT_TTL_SECONDS="600")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, ACCEPT, ESCALATE, STRICT, OPTIONAL))
    return engine, env, tmp_path_factory.mktemp("events")


@pytest.fixture(scope="module")
def worker(events: Events) -> Iterator[WorkerProcess]:
    engine, env, workdir = events
    process = WorkerProcess(f"events-{time.time_ns()}", env, workdir)
    try:
        asyncio.run(wait_until_ready(engine, [process], 120))
        yield process
    finally:
        process.stop()


async def correlations(settings: Settings) -> dict[Address, Correlation]:
    """What the correlator holds now, from its table's changelog."""
    table = await read_changelog(settings, "correlations")
    return {
        Address.from_stored(key.encode()): Correlation.from_dict(value)
        for key, value in table.items()
        if not key.startswith("#")
    }


async def waiting_for(settings: Settings, tenant: str, key: str, count: int = 1) -> None:
    """Until `count` waits for technician-accepted under `key` are with the correlator."""

    async def subscribed() -> bool:
        held = await correlations(settings)
        found = held.get(Address(tenant, "technician-accepted", "key", key))
        return found is not None and len(found.waiting) >= count

    await wait_until(subscribed, 60, f"{count} waits under {key!r}")


async def still_running(client: WorkflowClient, execution_id: str, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await client.wait_for(execution_id, timeout=seconds)


def outputs(outcome: Outcome) -> dict[str, Any]:
    return outcome.outputs


def test_an_event_reaches_the_wait_for_its_key_and_its_payload_is_the_output(
    events: Events, worker: WorkerProcess
) -> None:
    engine, _, _ = events
    request = f"r-{uuid.uuid4()}"

    async def scenario() -> Outcome:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("accept", {"request": request}, "t", "u")
            await waiting_for(engine, "t", request)
            await client.send_event(
                "technician-accepted", request, {"technician": "tech-7"}, "t", event_id="e1"
            )
            return await client.wait_for(execution_id, timeout=60)

    outcome = asyncio.run(scenario())
    assert outcome.status == "completed"
    assert outputs(outcome)["accepted"] == {"technician": "tech-7"}


def test_an_early_event_is_held_until_its_wait_begins(
    events: Events, worker: WorkerProcess
) -> None:
    engine, _, _ = events
    request = f"r-{uuid.uuid4()}"

    async def scenario() -> Outcome:
        async with WorkflowClient(engine) as client:
            await client.send_event("technician-accepted", request, {"technician": "early"}, "t")
            held = await wait_until(lambda: _held(engine, "t", request), 60, "the early event held")
            assert len(held) == 1
            execution_id = await client.start_workflow("accept", {"request": request}, "t", "u")
            return await client.wait_for(execution_id, timeout=60)

    outcome = asyncio.run(scenario())
    assert outcome.status == "completed"
    assert outputs(outcome)["accepted"] == {"technician": "early"}


async def _held(settings: Settings, tenant: str, key: str) -> list[Any]:
    found = (await correlations(settings)).get(Address(tenant, "technician-accepted", "key", key))
    return [] if found is None else found.held


def test_one_event_goes_to_one_wait_and_its_copy_is_applied_once(
    events: Events, worker: WorkerProcess
) -> None:
    engine, _, _ = events
    request = f"r-{uuid.uuid4()}"
    names = TopicNames.for_prefix(engine.topic_prefix)

    async def scenario() -> tuple[list[str], list[Outcome]]:
        async with WorkflowClient(engine) as client:
            ids = [
                await client.start_workflow("accept", {"request": request}, "t", f"u{n}")
                for n in range(2)
            ]
            await waiting_for(engine, "t", request, count=2)
            for _ in range(3):  # a producer retrying the same event
                await client.send_event("technician-accepted", request, {"n": 1}, "t", "same")
            first = await asyncio.wait(
                [asyncio.ensure_future(client.wait_for(i, timeout=60)) for i in ids],
                return_when=asyncio.FIRST_COMPLETED,
            )
            (done,) = first[0]
            winner = done.result()
            loser = next(i for i in ids if i != winner.execution_id)
            await still_running(client, loser, 5)
            await client.send_event("technician-accepted", request, {"n": 2}, "t", "other")
            second = await client.wait_for(loser, timeout=60)
            return ids, [winner, second]

    ids, (winner, second) = asyncio.run(scenario())
    assert outputs(winner)["accepted"] == {"n": 1}
    assert outputs(second)["accepted"] == {"n": 2}
    decisions = asyncio.run(read_topic(engine, names.step_outcomes))
    for execution_id in ids:
        ended = [
            e.record
            for e in decisions
            if e.name == "StepAttemptEnded"
            and e.record["execution_id"] == execution_id
            and e.record["step_id"] == "accepted"
            and e.record["outcome"] == "completed"
        ]
        assert len({r["event_id"] for r in ended}) == 1, ended


def test_a_tenants_event_never_reaches_another_tenants_wait_and_is_listed_unmatched(
    events: Events, worker: WorkerProcess
) -> None:
    engine, env, _ = events
    request = f"r-{uuid.uuid4()}"

    async def scenario() -> Outcome:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("accept", {"request": request}, "a", "u")
            await waiting_for(engine, "a", request)
            await client.send_event(
                "technician-accepted", request, {"from": "b"}, "b", event_id="b1", ttl_seconds=1
            )
            await still_running(client, execution_id, 4)
            await client.send_event("technician-accepted", request, {"from": "a"}, "a")
            return await client.wait_for(execution_id, timeout=60)

    outcome = asyncio.run(scenario())
    assert outputs(outcome)["accepted"] == {"from": "a"}
    listed = cli(
        env,
        "events",
        "--unmatched",
        "--tenant",
        "b",
        until=lambda r: request in r.stdout,
    )
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if request in line)
    assert "technician-accepted" in line and "b1" in line, listed.stdout
    others = cli(env, "events", "--unmatched", "--tenant", "a")
    assert request not in others.stdout


def test_a_signal_reaches_an_execution_by_its_id(events: Events, worker: WorkerProcess) -> None:
    engine, _, _ = events

    async def scenario() -> Outcome:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("strict", {}, "t", "u")
            await client.signal(execution_id, "visit-report", {"ok": True})
            return await client.wait_for(execution_id, timeout=60)

    outcome = asyncio.run(scenario())
    assert outcome.status == "completed"
    assert outputs(outcome)["visit"] == {"ok": True}


def test_on_timeout_continue_branches_skip_skips_and_fail_fails(
    events: Events, worker: WorkerProcess
) -> None:
    engine, _, _ = events

    async def scenario() -> dict[str, Outcome]:
        async with WorkflowClient(engine) as client:
            ids = {
                "escalate": await client.start_workflow(
                    "escalate", {"request": f"r-{uuid.uuid4()}"}, "t", "u"
                ),
                "optional": await client.start_workflow("optional", {}, "t", "u"),
                "strict": await client.start_workflow("strict", {}, "t", "u"),
            }
            return {k: await client.wait_for(i, timeout=60) for k, i in ids.items()}

    outcomes = asyncio.run(scenario())
    escalated = outputs(outcomes["escalate"])
    assert escalated["accepted"]["timed_out"] is True
    assert "reassign" in escalated, "the timeout's branch ran"
    assert outcomes["optional"].status == "completed"
    assert "visit" not in outputs(outcomes["optional"]), "skipped: no output"
    assert outcomes["strict"].status == "failed"
    assert outcomes["strict"].record["error"] == ("EventTimeout: no 'visit-report' event within 2s")


def test_cancel_ends_a_wait_and_explain_says_what_it_waits_for(
    events: Events, worker: WorkerProcess
) -> None:
    engine, env, _ = events
    request = f"r-{uuid.uuid4()}"

    async def start() -> str:
        async with WorkflowClient(engine) as client:
            execution_id = await client.start_workflow("accept", {"request": request}, "t", "u")
            await waiting_for(engine, "t", request)
            return execution_id

    execution_id = asyncio.run(start())
    explained = cli(env, "explain", execution_id, until=lambda r: "event" in r.stdout)
    assert (
        f"accepted: waiting for event 'technician-accepted' (correlation key '{request}' or a "
        "signal), with no timeout" in explained.stdout
    ), explained.stdout
    cancelled = cli(env, "cancel", execution_id, "--reason", "withdrawn", "--wait")
    assert cancelled.returncode == 0, cancelled.stderr

    async def unsubscribed() -> bool:
        found = (await correlations(engine)).get(
            Address("t", "technician-accepted", "key", request)
        )
        return found is None or not found.waiting

    asyncio.run(wait_until(unsubscribed, 60, "the cancelled wait unsubscribed"))


def test_register_refuses_a_bad_wait_for_an_event_with_its_location(
    events: Events, tmp_path: Path
) -> None:
    _, env, _ = events
    path = tmp_path / "bad-event.yaml"
    path.write_text(
        "id: bad-event\nsteps:\n"
        "  - {id: a, waitFor: {correlationKey: input.k}}\n"
        "  - {id: b, waitFor: {event: e, timeout: soon}, dependsOn: [a]}\n"
        "  - {id: c, waitFor: {event: e, correlationKey: 'steps.d.x'}, dependsOn: [b]}\n"
        "  - {id: d, type: noop, onTimeout: skip}\n"
    )
    result = cli(env, "register", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "steps[0].waitFor.event: an event name is required" in out, out
    assert "steps[1].waitFor.timeout: not a duration" in out, out
    assert "steps[2] (c).waitFor.correlationKey: reads step 'd'" in out, out
    assert "steps[3].onTimeout: only a step that waits (waitFor, human) times out so" in out, out
