"""The scale-out/scale-in loop: under load, a worker joins, serves, and leaves cleanly
(SIGTERM), again and again, as an operator scaling a deployment would. Most joiners
start on an empty data directory; every third rejoins on the store it left two rounds
before, far behind the changelog by then. In the split layout a joiner is two processes
(the coordinator; the executor and persister), and both join and leave together.

The pauses are the schedule (how long a joiner serves, how long until the next one
joins), not synchronisation: a join waits for the joiner's ready line, by condition.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tests.chaos.faults import Workers


@dataclass(frozen=True)
class ScaleScenario:
    diamonds: int
    maintenance: int
    start_rate: float
    stay_for: float  # seconds a joiner serves before it leaves
    away_for: float  # seconds from a leave to the next join
    deadline: float  # seconds, after the last start, for every execution to end

    @property
    def executions(self) -> int:
        return self.diamonds + self.maintenance


SCALE_SHORT = ScaleScenario(
    diamonds=500, maintenance=40, start_rate=10, stay_for=5, away_for=2, deadline=180
)
SCALE_FULL = ScaleScenario(
    diamonds=2_600, maintenance=200, start_rate=20, stay_for=8, away_for=3, deadline=300
)

READY_TIMEOUT = 90.0


def joiner_processes(layout: str, round_: int) -> dict[str, tuple[str, ...]]:
    if layout == "one":
        return {f"scale-j{round_}": ()}
    return {
        f"scale-j{round_}-coordinator": ("--roles", "coordinator"),
        f"scale-j{round_}-steps": ("--roles", "executor,persister"),
    }


@dataclass
class Scaling(Workers):
    layout: str = "one"
    scenario: ScaleScenario = SCALE_SHORT
    joins: int = 0
    behind: int = 0  # joins on a store left rounds before
    leaves: int = 0
    forced: int = 0  # leaves that SIGTERM did not end within 30 s

    async def join(self, round_: int) -> list[str]:
        """Start the round's joiner and wait until each of its processes says it is ready."""
        rejoin = round_ % 3 == 2
        processes = joiner_processes(self.layout, round_ - 2 if rejoin else round_)
        marks = {name: self._ready_lines(name) for name in processes}
        for name, roles in processes.items():
            self.start(name, roles)
        deadline = time.monotonic() + READY_TIMEOUT
        while any(self._ready_lines(name) <= marks[name] for name in processes):
            for name in processes:
                if self.workers[name].process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.workers[name].log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"joiner not ready in {READY_TIMEOUT} s:\n{self.log_tails()}")
            await asyncio.sleep(0.2)  # polling the joiner's log for its ready line
        self.joins += 1
        self.behind += rejoin
        return list(processes)

    def leave(self, names: list[str]) -> None:
        """Stop the joiner's processes with SIGTERM, as a scale-in does."""
        for name in names:
            worker = self.workers.pop(name)
            worker.stop()  # SIGTERM; SIGKILL only after 30 s
            self.forced += worker.process.returncode == -9
        self.leaves += 1

    async def run(self, until: asyncio.Event) -> None:
        round_ = 0
        while not until.is_set():
            joined = await self.join(round_)
            await asyncio.sleep(self.scenario.stay_for)  # the schedule: it serves this long
            self.leave(joined)
            await asyncio.sleep(self.scenario.away_for)  # the schedule: until the next join
            round_ += 1

    def summary(self) -> str:
        return (
            f"joins {self.joins} ({self.behind} on a store far behind), leaves {self.leaves}"
            f" ({self.forced} forced)"
        )

    def _ready_lines(self, name: str) -> int:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return 0
        return path.read_text(errors="replace").count(f"worker {name} ready")
