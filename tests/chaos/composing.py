"""The composing chaos load and its verdict: executions that fan out over 100 items and
run a sub-workflow, while workers are killed. The verdict reads the public topics as a
downstream service would: every instance decided once and in its place in the output,
one child per parent (started once, completed once), each parent completed once."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.events import from_json
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import build_definition
from tests.chaos.verifier import Verdict
from tests.integration.workers import read_topic
from tests.waiting import until_moment

ITEMS = 100
CHILD = build_definition(
    {
        "id": "chaos-child",
        "steps": [
            {"id": "a", "type": "noop"},
            {"id": "b", "type": "noop", "dependsOn": ["a"]},
        ],
    }
)
PARENT = build_definition(
    {
        "id": "chaos-compose",
        "steps": [
            {"id": "read", "type": "noop"},
            {
                "id": "each",
                "type": "noop",
                "forEach": "input.items",
                "maxParallel": 10,
                "retry": {"maxAttempts": 3},
                "dependsOn": ["read"],
            },
            {"id": "call", "workflow": {"id": "chaos-child", "input": {"n": "input.n"}}},
            {"id": "done", "type": "noop", "dependsOn": ["each", "call"]},
        ],
    }
)


def child_of(execution_id: str) -> str:
    return f"{execution_id}.call.1"


async def start_composing_at_pace(
    client: WorkflowClient, executions: int, rate: float, token: str
) -> list[str]:
    """Start every parent, `rate` a second (the pace is the load, not a wait)."""
    ids = []
    began = time.monotonic()
    for n in range(executions):
        execution_id = f"{token}-c{n}"
        items = [{"n": n, "i": i} for i in range(ITEMS)]
        await client.start_workflow(
            "chaos-compose", {"n": n, "items": items}, "t", f"u{n}", execution_id
        )
        ids.append(execution_id)
        await until_moment(began + (n + 1) / rate)
    await client.flush()
    return ids


@dataclass
class ComposeVerdict:
    """What the fan-outs and children came to, beside the general verdict."""

    fan_outs_whole: int = 0
    fan_outs_wrong: list[str] = field(default_factory=list)  # missing, doubled, out of order
    children_once: int = 0
    children_wrong: list[str] = field(default_factory=list)  # none, two, or started twice

    @property
    def ok(self) -> bool:
        return not (self.fan_outs_wrong or self.children_wrong)

    def line(self, general: Verdict, faults: str) -> str:
        head = "ALL-COMPOSED" if self.ok and general.ok else "COMPOSING-BROKEN"
        line = (
            f"chaos-compose: {head} {general.completed}/{general.expected} completed"
            f" (parents and children), {faults}; fan-outs whole {self.fan_outs_whole}"
            f" ({ITEMS} items each, every instance decided once, in item order); children"
            f" started once and completed once {self.children_once}; duplicates"
            f" {general.duplicates} (identical ids); watchdog resumes {general.watchdog_resumes}"
        )
        if not (self.ok and general.ok):
            line += (
                f"; general: {general.line(faults)}; fan-outs wrong {self.fan_outs_wrong[:5]},"
                f" children wrong {self.children_wrong[:5]}"
            )
        return line


async def verify_composing(settings: Settings, parents: list[str]) -> ComposeVerdict:
    names = TopicNames.for_prefix(settings.topic_prefix)
    verdict = ComposeVerdict()
    outputs: dict[str, dict[str, object]] = {}
    for event in await read_topic(settings, names.workflow_completed):
        if event.name == "WorkflowCompleted":
            outputs[event.record["execution_id"]] = from_json(event.record["outputs_json"])
    starts: dict[str, set[str]] = defaultdict(set)
    children_of: dict[str, set[str]] = defaultdict(set)
    for event in await read_topic(settings, names.executions):
        if event.name == "WorkflowStarted" and event.record.get("parent"):
            child = event.record["execution_id"]
            starts[child].add(event.record["event_id"])
            children_of[event.record["parent"]["execution_id"]].add(child)
    for parent in parents:
        each = (outputs.get(parent) or {}).get("each")
        expected = [{"step": f"each[{i}]"} for i in range(ITEMS)]
        if each == expected:
            verdict.fan_outs_whole += 1
        else:
            verdict.fan_outs_wrong.append(parent)
        child = child_of(parent)
        called = (outputs.get(parent) or {}).get("call")
        if (
            children_of.get(parent) == {child}
            and len(starts[child]) == 1
            and called == outputs.get(child)
            and called is not None
        ):
            verdict.children_once += 1
        else:
            verdict.children_wrong.append(
                f"{parent}: children {sorted(children_of.get(parent, ()))},"
                f" starts {len(starts[child])}"
            )
    return verdict
