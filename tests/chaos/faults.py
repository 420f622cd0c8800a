"""The fault loop: SIGKILL a worker, restart it on the same data directory, and now and
then let a third worker join (a rebalance) and kill another worker while it runs.

A worker is one process, or in the split layout two (`--roles coordinator` and `--roles
executor,persister`), and then each process is a victim of its own.

The pauses here are the fault schedule itself (how long a worker lives, how long it
stays down), not synchronisation: what the test waits for, it waits for by condition.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, wait_until_ready
from stepstream.streams.settings import Settings
from tests.waiting import on_schedule

T = TypeVar("T")


@dataclass(frozen=True)
class Scenario:
    diamonds: int  # executions of a diamond of 50 ms sleep steps
    maintenance: int  # executions of the reference workflow (PostgreSQL side effects)
    start_rate: float  # executions started per second, spread over the faults
    kill_every: float  # seconds a worker lives between kills
    down_for: float  # seconds a killed worker stays down before its restart
    join_at_kill: int  # after this kill a third worker joins, and a worker dies mid-rebalance
    deadline: float  # seconds, after the last start, for every execution to end

    @property
    def executions(self) -> int:
        return self.diamonds + self.maintenance


SHORT = Scenario(
    diamonds=240,
    maintenance=60,
    start_rate=10,
    kill_every=5,
    down_for=1,
    join_at_kill=2,
    deadline=180,
)
FULL = Scenario(
    diamonds=1_200,
    maintenance=300,
    start_rate=20,
    kill_every=6,
    down_for=1,
    join_at_kill=4,
    deadline=300,
)


# The processes of the two workers, by name, with their role arguments.
LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "one": {"chaos-w1": (), "chaos-w2": ()},
    "split": {
        "chaos-w1-coordinator": ("--roles", "coordinator"),
        "chaos-w2-steps": ("--roles", "executor,persister"),
        "chaos-w2-coordinator": ("--roles", "coordinator"),
        "chaos-w1-steps": ("--roles", "executor,persister"),
    },
}


@dataclass
class Workers:
    """The worker processes of a chaos test, by name, and what their logs say."""

    env: dict[str, str]
    workdir: Path
    processes: dict[str, tuple[str, ...]]  # a layout's processes, with their role arguments
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    logs: set[Path] = field(default_factory=set)

    def start(self, name: str, roles: tuple[str, ...] | None = None) -> WorkerProcess:
        """Start `name` on its data directory (`workdir/name`: empty the first time)."""
        if roles is None:
            roles = self.processes.get(name, ())  # the joiner runs every role
        self.workers[name] = worker = WorkerProcess(name, self.env, self.workdir, roles)
        self.logs.add(worker.log_path)
        return worker

    def log_lines(self, marker: str) -> int:
        """How many lines of every worker's log (restarts append) contain `marker`."""
        return sum(
            line.count(marker)
            for path in self.logs
            for line in path.read_text(errors="replace").splitlines()
        )

    def stalled_executions(self) -> list[str]:
        """The executions the workers' watchdogs announced again, from their logs."""
        marker = "watchdog: execution "
        found = [
            line.split(marker, 1)[1].split(" ", 1)[0]
            for path in self.logs
            for line in path.read_text(errors="replace").splitlines()
            if marker in line
        ]
        return sorted(set(found))

    def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def log_tails(self) -> str:
        return "\n".join(f"--- {n}\n{w.log_tail(30)}" for n, w in self.workers.items())

    def stall_reports(self, limit: int = 20) -> str:
        """The progress guard's lines and faust's livelock detector's (a partition assigned
        but not consumed), for the evidence of a failed run."""
        markers = (
            "progress guard: ",
            "Stream stopped processing",
            "not started processing",
            "fetch request",
        )
        found = [
            f"{path.stem}: {line[:400]}"
            for path in self.logs
            for line in path.read_text(errors="replace").splitlines()
            if any(marker in line for marker in markers)
        ]
        return "\n".join(found[:limit]) or "no stall reported by the guard or faust"


@dataclass
class Faults(Workers):
    """Kills and restarts workers until told to stop; counts what it did."""

    scenario: Scenario = SHORT
    kills: int = 0
    rebalance_kills: int = 0

    async def kill_and_restart(self, name: str, until: asyncio.Event) -> None:
        self.workers[name].kill()
        self.kills += 1
        await on_schedule(self.scenario.down_for, until)  # the fault: down this long
        self.workers[name].stop()  # closes its log file
        self.start(name)

    async def run(self, until: asyncio.Event) -> None:
        victims = itertools.cycle(self.processes)
        joiner = "chaos-w3"
        while not await on_schedule(self.scenario.kill_every, until):  # the fault schedule
            await self.kill_and_restart(next(victims), until)
            if self.kills == self.scenario.join_at_kill:
                # A third worker joins; while the group rebalances, another worker dies.
                self.start(joiner)
                await on_schedule(1.5, until)  # the fault: a kill 1.5 s into the rebalance
                await self.kill_and_restart(next(victims), until)
                self.rebalance_kills += 1
            elif self.kills == self.scenario.join_at_kill + 3 and joiner in self.workers:
                # ... and leaves for good, killed: its partitions move back.
                self.workers.pop(joiner).kill()
                self.kills += 1


async def load_while_killing(
    faults: Faults, engine: Settings, load: Callable[[WorkflowClient], Awaitable[T]]
) -> T:
    """Start the layout's workers, wait until they serve, then run `load` (a client
    starting executions at its pace) while the fault loop kills and restarts them; the
    loop stops once the load is in. The workers keep running for the verdict."""
    for name in faults.processes:
        faults.start(name)
    await wait_until_ready(engine, list(faults.workers.values()), 120)
    loading = asyncio.Event()
    fault_loop = asyncio.create_task(faults.run(until=loading))
    try:
        async with WorkflowClient(engine, follow_outcomes=False) as client:
            return await load(client)
    finally:
        loading.set()
        await fault_loop
