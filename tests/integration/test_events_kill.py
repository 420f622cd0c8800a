"""Waits and held events survive their worker's SIGKILL: the correlator's table comes
back from its changelog on the worker that takes over, and every event is applied once,
whether it was sent before its wait began, while the first worker lived, or after."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stepstream.client.workflow_client import Outcome, WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.integration.test_events import ACCEPT, waiting_for
from tests.integration.workers import (
    WorkerProcess,
    engine_env,
    prepare,
    read_topic,
    wait_until_ready,
)


def test_waits_and_held_events_survive_a_sigkill_and_apply_once(
    settings: Settings, run_token: str, tmp_path: Path
) -> None:
    env = engine_env(settings, f"test-{run_token}-events-kill")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, ACCEPT))
    first = WorkerProcess("events-doomed", env, tmp_path)
    asyncio.run(wait_until_ready(engine, [first], 120))
    keys = [f"{run_token}-k{n}" for n in range(12)]
    early, during, late = keys[:4], keys[4:8], keys[8:]

    async def scenario() -> list[Outcome]:
        async with WorkflowClient(engine) as client:
            for key in early:  # held: no wait yet
                await client.send_event("technician-accepted", key, {"key": key}, "t", f"e-{key}")
            ids = [await client.start_workflow("accept", {"request": k}, "t", "u") for k in keys]
            for key in late:
                await waiting_for(engine, "t", key)
            for key in during:
                await client.send_event("technician-accepted", key, {"key": key}, "t", f"e-{key}")
            first.kill()  # whatever the first worker had done with them
            heir = WorkerProcess("events-heir", env, tmp_path)
            try:
                await wait_until_ready(engine, [heir], 180)
                for key in [*during, *late]:  # the producer's retry, and the late events
                    await client.send_event(
                        "technician-accepted", key, {"key": key}, "t", f"e-{key}"
                    )
                return list(await asyncio.gather(*(client.wait_for(i, timeout=180) for i in ids)))
            finally:
                heir.stop()

    try:
        outcomes = asyncio.run(scenario())
    finally:
        first.stop()
    assert [o.status for o in outcomes] == ["completed"] * len(keys)
    for key, outcome in zip(keys, outcomes, strict=True):
        assert outcome.outputs["accepted"] == {"key": key}, "each wait got its own event"
    names = TopicNames.for_prefix(engine.topic_prefix)
    decisions = asyncio.run(read_topic(engine, names.step_outcomes))
    ended = [
        e.record
        for e in decisions
        if e.name == "StepAttemptEnded"
        and e.record["step_id"] == "accepted"
        and e.record["outcome"] == "completed"
    ]
    per_execution = {r["execution_id"]: {r["event_id"]} for r in ended}
    for record in ended:
        per_execution[record["execution_id"]].add(record["event_id"])
    assert len(per_execution) == len(keys)
    assert all(len(ids) == 1 for ids in per_execution.values()), "one decision per wait"
