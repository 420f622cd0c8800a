"""The waiting chaos load and its verdict: executions that sleep on a durable timer and
wait for an event by business key, while workers are killed; half the events are sent
before their wait begins, half after, and some twice. The verdict reads the public
topics as a downstream service would: every timer fired once and never early, every
event was applied once, to the execution it was meant for."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import build_definition
from tests.chaos.verifier import Verdict
from tests.integration.workers import read_topic
from tests.waiting import until_moment

NAP_MS = 3_000
EVENT = "chaos-accepted"
WAITS = build_definition(
    {
        "id": "chaos-waits",
        "steps": [
            {"id": "nap", "wait": {"for": f"{NAP_MS // 1000}s"}},
            {"id": "accepted", "waitFor": {"event": EVENT, "correlationKey": "input.key"}},
            {"id": "done", "type": "noop", "dependsOn": ["nap", "accepted"]},
        ],
    }
)
LATE_BY = 2.0  # seconds after its start that a late event is sent
COPY_EVERY = 5  # every fifth event is sent again, with the same id


@dataclass(frozen=True)
class Sent:
    """What the load did for one execution: its key, and its event's id and payload."""

    execution_id: str
    key: str
    event_id: str
    payload: dict[str, Any]
    early: bool  # sent before its execution's start, or LATE_BY seconds after it
    twice: bool  # sent again, with the same id


async def start_waiting_at_pace(
    client: WorkflowClient, executions: int, rate: float, token: str
) -> list[Sent]:
    """Start every execution, `rate` a second (the pace is the load, not a wait); send
    each one's event before its start (even n) or LATE_BY seconds after it (odd n)."""
    sent: list[Sent] = []
    late: list[asyncio.Task[None]] = []
    began = time.monotonic()

    async def send(item: Sent, delay: float) -> None:
        await until_moment(time.monotonic() + delay)  # the load: the event comes this later
        for _ in range(2 if item.twice else 1):
            await client.send_event(EVENT, item.key, item.payload, "t", item.event_id)

    for n in range(executions):
        ids = (f"{token}-w{n}", f"{token}-k{n}", f"{token}-e{n}")
        item = Sent(*ids, {"n": n}, early=n % 2 == 0, twice=n % COPY_EVERY == 0)
        if item.early:
            await send(item, 0)
        await client.start_workflow(
            "chaos-waits", {"key": item.key}, "t", f"u{n}", item.execution_id
        )
        if not item.early:
            late.append(asyncio.create_task(send(item, LATE_BY)))
        sent.append(item)
        await until_moment(began + (n + 1) / rate)  # the load: starts paced at `rate`
    await asyncio.gather(*late)
    await client.flush()
    return sent


@dataclass
class WaitVerdict:
    """What the timers and events came to, beside the general verdict."""

    timers_fired: int = 0
    timers_early: list[str] = field(default_factory=list)
    timers_not_once: list[str] = field(default_factory=list)
    lateness_ms: list[int] = field(default_factory=list)
    events_applied: int = 0
    events_wrong: list[str] = field(default_factory=list)  # lost, or another's payload
    events_twice: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.timers_early or self.timers_not_once or self.events_wrong) and not (
            self.events_twice
        )

    def line(self, general: Verdict, faults: str, sent: list[Sent]) -> str:
        head = "ALL-WAITS-KEPT" if self.ok and general.ok else "WAITS-BROKEN"
        late = sorted(self.lateness_ms) or [0]
        early = sum(1 for s in sent if s.early)
        line = (
            f"chaos-waits: {head} {general.completed}/{general.expected} completed, {faults};"
            f" timers fired once {self.timers_fired} (early {len(self.timers_early)},"
            f" lateness p50 {late[len(late) // 2]} ms, p99 {late[int(len(late) * 0.99)]} ms,"
            f" max {late[-1]} ms); events applied once {self.events_applied}"
            f" ({early} sent early, {len(sent) - early} late,"
            f" {sum(1 for s in sent if s.twice)} sent twice);"
            f" watchdog resumes {general.watchdog_resumes}"
        )
        if not (self.ok and general.ok):
            line += (
                f"; general: {general.line(faults)}; timers early {self.timers_early[:5]},"
                f" not once {self.timers_not_once[:5]}; events wrong {self.events_wrong[:5]},"
                f" twice {self.events_twice[:5]}"
            )
        return line


async def verify_waits(settings: Settings, sent: list[Sent]) -> WaitVerdict:
    """From step-outcomes: each execution's timer completed by one decision, at or after
    its due time; its wait completed once, with its own event's payload and id."""
    names = TopicNames.for_prefix(settings.topic_prefix)
    verdict = WaitVerdict()
    naps: dict[str, set[str]] = defaultdict(set)
    accepted: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for event in await read_topic(settings, names.step_outcomes):
        record = event.record
        if event.name != "StepAttemptEnded" or record["outcome"] != "completed":
            continue
        execution_id = record["execution_id"]
        if record["step_id"] == "nap":
            naps[execution_id].add(record["event_id"])
            output = json.loads(record["output_json"])
            verdict.lateness_ms.append(output["fired_at_ms"] - output["due_at_ms"])
            if output["fired_at_ms"] < output["due_at_ms"]:
                verdict.timers_early.append(execution_id)
            if output["due_at_ms"] - record["started_at"] != NAP_MS:
                verdict.timers_early.append(f"{execution_id}: due {output} from {record}")
        elif record["step_id"] == "accepted":
            decision = (record["event_id"], record["worker"] or "", record["output_json"] or "")
            accepted[execution_id].add(decision)
    appliers: dict[str, set[str]] = defaultdict(set)  # event id -> executions it ended
    for item in sent:
        fired = naps.get(item.execution_id, set())
        if len(fired) == 1:
            verdict.timers_fired += 1
        else:
            verdict.timers_not_once.append(f"{item.execution_id}: {len(fired)}")
        decisions = accepted.get(item.execution_id, set())
        if len(decisions) != 1:
            verdict.events_wrong.append(f"{item.execution_id}: {len(decisions)} decisions")
            continue
        ((_, worker, output),) = decisions
        if (worker, json.loads(output or "null")) != (f"event:{item.event_id}", item.payload):
            verdict.events_wrong.append(f"{item.execution_id}: {worker} {output}")
            continue
        appliers[item.event_id].add(item.execution_id)
        verdict.events_applied += 1
    verdict.events_twice = [f"{e}: {sorted(x)}" for e, x in appliers.items() if len(x) > 1]
    return verdict
