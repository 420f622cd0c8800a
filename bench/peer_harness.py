"""What every engine in bench/peers.py is put through, and how its CPU is counted.

Imports nothing of stepstream's: the peers run it from their own virtualenv
(`make bench-peers`), the engine from the project's.

An engine is a `Diamonds`: it runs N executions of the 4-step diamond (step 1, then
steps 2 and 3 together, then step 4) and returns once all have completed, and it names
its processes by role, servers included. `measure` puts it through the three workloads
and returns one `Figures`, which a peer prints as its last line for bench/peers.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

RESULT_MARK = "PEER-RESULT "
STEPS = 4  # per diamond
WARM_UP = 10  # diamonds, one at a time


class Diamonds(Protocol):
    def processes(self) -> dict[str, list[int]]:
        """The engine's processes by role: workers, servers, the client driving it."""

    async def run(self, executions: int, seconds: float = 0.0) -> None:
        """Start `executions` diamonds whose steps each sleep `seconds`, and wait until
        every one has completed (and, for an engine that persists after completing, until
        that is done: its share is part of a step's cost)."""


@dataclass
class Figures:
    engine: str
    version: str
    executions: int
    seconds: float
    steps_per_second: float
    cpu_us_per_step: dict[str, float]  # by role
    latency_ms: list[float]  # one diamond at a time, each end to end
    sleepy_wall_s: float  # one diamond of 1 s steps

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_us_per_step.values())

    def line(self) -> str:
        return RESULT_MARK + json.dumps(asdict(self))

    @classmethod
    def parse(cls, output: str) -> Figures:
        for line in reversed(output.splitlines()):
            if line.startswith(RESULT_MARK):
                return cls(**json.loads(line[len(RESULT_MARK) :]))
        raise ValueError("the peer printed no result line")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, all its threads (from /proc; steadier than
    steps/s on a machine whose speed drifts between sittings). 0 for a process that has
    ended: a PostgreSQL backend that closed is not counted."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_of(matches: str) -> list[int]:
    """Processes whose command line contains `matches` (the broker, PostgreSQL's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if matches in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return found


def cpu_by_process(processes: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {role: {pid: cpu_seconds(pid) for pid in pids} for role, pids in processes.items()}


def cpu_spent(
    before: dict[str, dict[int, float]], processes: dict[str, list[int]]
) -> dict[str, float]:
    """Seconds of CPU by role since `before`, of `processes` listed again now: one that
    started meanwhile (a PostgreSQL backend a pool opened) counts from 0; one that ended
    meanwhile is not counted, as /proc no longer shows it."""
    after = cpu_by_process(processes)
    return {
        role: sum(cpu - before.get(role, {}).get(pid, 0.0) for pid, cpu in pids.items())
        for role, pids in after.items()
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def arguments(description: str | None) -> argparse.Namespace:
    """What bench/peers.py passes each peer."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument("--latency-runs", type=int, default=100)
    return parser.parse_args()


def peers_dir() -> Path:
    """Where `make bench-peers` puts what the peers need that is not a Python package
    (the Temporal CLI), outside git like the broker's jars."""
    cache = os.environ.get("STEPSTREAM_CACHE_DIR", str(Path.home() / ".cache/stepstream"))
    return Path(cache) / "peers"


async def measure(
    engine: str, version: str, diamonds: Diamonds, executions: int, latency_runs: int
) -> Figures:
    # Warm (connections, caches, the first workflow tasks) and measure the latency
    # first, one diamond at a time on an idle engine. After a burst of concurrent
    # workflows Temporal's Python worker took 350 ms a diamond instead of 130 ms, which
    # says more about its recovery from load than its latency.
    for _ in range(WARM_UP):
        await diamonds.run(1)
    latency = []
    for _ in range(latency_runs):
        started = time.perf_counter()
        await diamonds.run(1)
        latency.append((time.perf_counter() - started) * 1000)
    before = cpu_by_process(diamonds.processes())
    started = time.perf_counter()
    await diamonds.run(executions)
    elapsed = time.perf_counter() - started
    steps = executions * STEPS
    cpu = {
        role: seconds / steps * 1e6
        for role, seconds in cpu_spent(before, diamonds.processes()).items()
    }
    started = time.perf_counter()
    await diamonds.run(1, seconds=1.0)
    sleepy = time.perf_counter() - started
    return Figures(engine, version, executions, elapsed, steps / elapsed, cpu, latency, sleepy)


def describe(figures: Figures) -> str:
    roles = ", ".join(f"{role} {us:,.0f}" for role, us in figures.cpu_us_per_step.items())
    lat = figures.latency_ms
    return (
        f"{figures.engine} {figures.version}: {figures.executions} diamonds in "
        f"{figures.seconds:.1f} s, "
        f"{figures.steps_per_second:,.0f} steps/s; CPU per step {figures.cpu_total:,.0f} us "
        f"({roles}); one at a time p50 {percentile(lat, 0.5):.0f} ms, "
        f"p99 {percentile(lat, 0.99):.0f} ms; 1 s steps: wall {figures.sleepy_wall_s:.2f} s "
        "(critical path 3 s)"
    )
