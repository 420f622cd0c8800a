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
from dataclasses import dataclass

from tests.chaos.faults import Workers
from tests.waiting import on_schedule, wait_until


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

        def ready() -> bool:
            for name in processes:
                if self.workers[name].process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.workers[name].log_tail()}")
            return all(self._ready_lines(name) > marks[name] for name in processes)

        try:
            await wait_until(ready, READY_TIMEOUT, "the joiner's ready lines")
        except TimeoutError as late:
            raise TimeoutError(f"{late}:\n{self.log_tails()}") from None
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
            await on_schedule(self.scenario.stay_for, until)  # the schedule: it serves this long
            self.leave(joined)
            await on_schedule(self.scenario.away_for, until)  # the schedule: until the next join
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
