"""Broker faults on the 3-node cluster (tests/cluster.py), under the chaos load:

- in a loop, SIGKILL the node that leads the most `executions` and `step-completed`
  partitions, and restart it after `down_for`;
- then one node down for `long_down` seconds;
- then two nodes down for `quorum_down` seconds: the cluster has no quorum and writes
  block (acks=all, min.insync.replicas=2); nothing may be lost.

After each kill a probe execution is started; the time until it completes is the time
until the pipeline flows again. The pauses are the fault schedule, not synchronisation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from tests.cluster import KafkaCluster
from tests.waiting import on_schedule, until_moment

# faust's text format: "[2026-12-07 05:30:01,123] [pid] [ERROR] ..."
ERROR_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)[^]]*\] \[\d+\] \[ERROR\]")


@dataclass(frozen=True)
class BrokerSchedule:
    kills: int  # busiest-node kills in the loop
    kill_every: float
    down_for: float
    long_down: float  # one node down this long (0: skipped)
    quorum_down: float  # two nodes down this long (0: skipped)


# A probe's bound: well past the longest outage (60 s), and short enough that a lost
# probe fails the test with its reason before the test's own timeout.
PROBE_SECONDS = 150
SHORT_BROKERS = BrokerSchedule(kills=1, kill_every=5, down_for=5, long_down=0, quorum_down=5)
FULL_BROKERS = BrokerSchedule(kills=4, kill_every=10, down_for=8, long_down=60, quorum_down=10)


@dataclass
class BrokerFaults:
    cluster: KafkaCluster
    engine: Settings
    schedule: BrokerSchedule
    kills: int = 0
    recoveries: list[float] = field(default_factory=list)  # seconds, kill to a probe's end
    outages: list[tuple[float, float]] = field(default_factory=list)  # wall-clock spans

    async def run(self, until: asyncio.Event) -> None:
        names = TopicNames.for_prefix(self.engine.topic_prefix)
        busy = [names.executions, names.step_completed]
        for _ in range(self.schedule.kills):
            if await on_schedule(self.schedule.kill_every, until):
                break
            await self.outage([await self.cluster.busiest(busy)], self.schedule.down_for)
        if self.schedule.long_down and not until.is_set():
            await self.outage([await self.cluster.busiest(busy)], self.schedule.long_down)
        if self.schedule.quorum_down and not until.is_set():
            await self.outage([1, 2], self.schedule.quorum_down, probe=False)

    async def outage(self, nodes: list[int], seconds: float, probe: bool = True) -> None:
        began = time.time()
        for node in nodes:
            self.cluster.kill(node)
            self.kills += 1
        recovery = asyncio.create_task(self.time_to_flow(began)) if probe else None
        await until_moment(time.monotonic() + seconds)  # the fault: down this long
        await asyncio.to_thread(self.cluster.up)  # the killed nodes start again
        self.outages.append((began, time.time()))
        if recovery is not None:
            self.recoveries.append(await recovery)

    async def time_to_flow(self, began: float) -> float:
        """Seconds from the kill until a probe started right after it has completed. A
        probe that does not end fails the test within its time, saying what the audit
        trail holds of it: an execution the engine lost, or an outcome the client missed."""
        async with WorkflowClient(self.engine) as client:
            execution_id = await client.start_workflow("probe", {}, "probe", f"flow-{began}")
            try:
                await client.wait_for(execution_id, timeout=PROBE_SECONDS)
            except TimeoutError:
                recorded = await client.describe(execution_id)
                raise AssertionError(
                    f"probe {execution_id}, started at a broker kill, did not end within"
                    f" {PROBE_SECONDS} s; PostgreSQL has {recorded!r}"
                ) from None
        return time.time() - began

    def describe(self) -> str:
        flows = ", ".join(f"{s:.1f}" for s in self.recoveries) or "none"
        return f"broker kills {self.kills}, flowing again after (s) {flows}"


def error_lines_per_second(logs: set[Path], outages: list[tuple[float, float]]) -> str:
    """The worker logs' ERROR lines in the outages: the busiest second and the mean."""
    per_second: Counter[str] = Counter()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            found = ERROR_LINE.match(line)
            if found:
                per_second[found.group(1)] += 1
    inside = Counter(
        {
            second: count
            for second, count in per_second.items()
            if any(start - 1 <= _epoch(second) <= end + 30 for start, end in outages)
        }
    )
    span = sum(end - start + 30 for start, end in outages) or 1.0
    busiest = max(inside.values(), default=0)
    return (
        f"ERROR lines during outages: {sum(inside.values())}, {sum(inside.values()) / span:.1f}/s"
        f" mean, {busiest} in the busiest second"
    )


def _epoch(second: str) -> float:
    return time.mktime(time.strptime(second, "%Y-%m-%d %H:%M:%S"))
