"""Where a worker's CPU goes: py-spy samples of the thread holding the GIL, by part.

    bench/pipeline.py --phases 2 --profile   # py-spy from .venv-peers (make bench-peers)

Each sample's stack is given to the first part, from the outermost frame inwards, that
one of its frames belongs to: a record the coordinator sends counts for the coordinator,
a batch aiokafka's sender task writes counts for the producer. Shares of the samples
are shares of the worker's Python CPU; its native threads (RocksDB's, the OS's) are not
sampled, and the worker's CPU per step from /proc stays the figure to compare.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

PY_SPY = Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "py-spy"

# (part, markers): a frame belongs to the part when its text contains a marker.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("intake (starts: admission, announce)", ("agents/intake.py", "agents/admission.py")),
    ("coordinator: decode and decide (the core)", ("Coordinator.decide",)),
    ("coordinator: checkpoints (store, changelog)", ("Checkpoints.write", "Changelog.send")),
    ("coordinator: emit (encode, send)", ("agents/coordinator.py",)),
    ("executor (decode, run, report)", ("agents/executor.py",)),
    ("persister (decode, PostgreSQL)", ("agents/persister.py", "infra/critical_paths.py")),
    ("progress guard, watchdogs, timers", ("streams/guard.py", "watchdog.py", "due_events.py")),
    ("faust: consumer thread, fetch, streams", ("faust/transport/", "faust/streams.py")),
    ("aiokafka: producer's sender", ("aiokafka/producer/sender.py",)),
    ("aiokafka: fetcher, connections", ("aiokafka/consumer/", "aiokafka/conn.py")),
    ("faust/mode: tables, timers, services", ("faust/", "mode/")),
]


class Sampling:
    """py-spy sampling one process until `stop` (raw, collapsed stacks into `output`)."""

    def __init__(self, pid: int, output: Path) -> None:
        if not PY_SPY.exists():
            raise SystemExit(f"{PY_SPY} is missing: run `make bench-peers` first")
        self.output = output
        command = [str(PY_SPY), "record", "--gil", "--rate", "200", "--format", "raw"]
        self.process = subprocess.Popen(  # noqa: S603 - the profiler make bench-peers installed
            [*command, "--pid", str(pid), "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # py-spy writes its output on ^C
        self.process.wait(timeout=60)


def part_of(frames: list[str]) -> str:
    for part, markers in PARTS:
        if any(marker in frame for frame in frames for marker in markers):
            return part
    return "other (event loop, asyncio, logging)"


def shares(collapsed: str) -> dict[str, float]:
    """Each part's share of the samples, largest first."""
    counts: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[part_of(stack.split(";"))] += int(count)
    total = sum(counts.values()) or 1
    return {part: n / total for part, n in counts.most_common()}


def report(name: str, output: Path, cpu_us_per_step: float) -> str:
    lines = [f"    where {name}'s CPU went (py-spy --gil; {output}):"]
    for part, share in shares(output.read_text()).items():
        lines.append(f"      {share:6.1%}  ~{share * cpu_us_per_step:5.0f} us/step  {part}")
    return "\n".join(lines)
