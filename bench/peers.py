"""The engine beside Celery, Temporal and DBOS on the same machine, in one sitting.

    make bench-peers      # once: the peers' virtualenv and the Temporal CLI
    .venv/bin/python bench/peers.py [--executions 3000] [--latency-runs 100] [--rounds 2]

The same work on each (bench/peer_harness.py): N no-op diamonds at saturation (steps/s,
and CPU per step of every process the engine runs on, servers included), then one diamond
at a time (end-to-end latency p50/p99), then one diamond whose steps sleep 1 s (wall time
against its 3 s critical path). Engines, alternated within each round:
  stepstream-one    one worker process on the local Kafka (PostgreSQL, Redis beside it)
  stepstream-split  a coordinator process, and an executor and persister process
  celery            prefork -c 2 on the local Redis (bench/peer_celery.py)
  temporal          the dev server (SQLite) and one Python worker (bench/peer_temporal.py)
  dbos              DBOS Transact on the local PostgreSQL (bench/peer_dbos.py)
The peers run in .venv-peers, apart from the project's packages. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from peer_harness import Figures, describe, measure, peers_dir, percentile, pids_of
from pipeline import fresh_engine, quiesce, start_workers  # bench/ is on sys.path

from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.worker_process import WorkerProcess, wait_until_ready
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import delete_topics_with_prefix

HERE = Path(__file__).resolve().parent
PEERS_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
ENGINES = ("stepstream-one", "stepstream-split", "celery", "temporal", "dbos")


class StepstreamDiamonds:
    def __init__(
        self, settings: Settings, client: WorkflowClient, workers: list[WorkerProcess]
    ) -> None:
        self.settings = settings
        self.client = client
        self.workers = workers

    def processes(self) -> dict[str, list[int]]:
        return {
            **{worker.name: [worker.process.pid] for worker in self.workers},
            "broker": pids_of("kafka.Kafka"),
            "postgres": pids_of("postgres"),
            "redis": pids_of("redis-server"),
            "client": [os.getpid()],
        }

    async def run(self, executions: int, seconds: float = 0.0) -> None:
        workflow = {0.0: "diamond-noop", 1.0: "diamond-1s"}[seconds]  # pipeline's two
        ids = [
            await self.client.start_workflow(workflow, {}, f"t{n % 16}", f"u{n}")
            for n in range(executions)
        ]
        await self.client.flush()
        outcomes = await asyncio.gather(*(self.client.wait_for(i, timeout=600) for i in ids))
        if any(outcome.status != "completed" for outcome in outcomes):
            raise RuntimeError("an execution did not complete")
        if executions > 1:
            await quiesce(self.settings)  # persisting is part of a step's cost


async def run_stepstream(layout: str, executions: int, latency_runs: int) -> Figures:
    env, settings, workdir = await fresh_engine()
    workers = start_workers(env, workdir, 1, split=layout == "split")
    try:
        await wait_until_ready(settings, workers, timeout=120)
        async with WorkflowClient(settings) as client:
            diamonds = StepstreamDiamonds(settings, client, workers)
            engine = f"stepstream-{layout}"
            figures = await measure(
                engine, version("stepstream"), diamonds, executions, latency_runs
            )
    finally:
        for worker in workers:
            worker.stop()
        await delete_topics_with_prefix(kafka_access(settings), settings.topic_prefix)
    print(describe(figures), flush=True)
    return figures


def run_peer(name: str, executions: int, latency_runs: int) -> Figures:
    if not PEERS_PYTHON.exists():
        raise SystemExit(f"{PEERS_PYTHON} is missing: run `make bench-peers` first")
    command = [str(PEERS_PYTHON), str(HERE / f"peer_{name}.py")]
    options = ["--executions", str(executions), "--latency-runs", str(latency_runs)]
    done = subprocess.run(  # noqa: S603 - the peers' interpreter and our own scripts
        [*command, *options], cwd=HERE, capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"peer {name} failed with exit code {done.returncode}")
    figures = Figures.parse(done.stdout)
    print(describe(figures), flush=True)
    return figures


def run_one(engine: str, executions: int, latency_runs: int) -> Figures:
    if engine.startswith("stepstream-"):
        layout = engine.removeprefix("stepstream-")
        return asyncio.run(run_stepstream(layout, executions, latency_runs))
    return run_peer(engine, executions, latency_runs)


def table(runs: list[Figures]) -> None:
    print(
        "\n| engine | steps/s | CPU per step (us), all processes | by process (us) "
        "| latency p50 / p99 (ms) | 1 s steps: wall (s) |"
    )
    print("|---|---|---|---|---|---|")
    for f in runs:
        roles = ", ".join(f"{role} {us:,.0f}" for role, us in f.cpu_us_per_step.items())
        p50, p99 = percentile(f.latency_ms, 0.5), percentile(f.latency_ms, 0.99)
        print(
            f"| {f.engine} {f.version} | {f.steps_per_second:,.0f} | {f.cpu_total:,.0f} "
            f"| {roles} | {p50:.0f} / {p99:.0f} | {f.sleepy_wall_s:.2f} |"
        )


def ratios(rounds: list[dict[str, Figures]], base: str) -> None:
    print(f"\nratios, {base} against each, per round (steps/s more, CPU per step less):")
    for number, results in enumerate(rounds, 1):
        ours = results.get(base)
        if ours is None:
            continue
        parts = [
            f"{name} {ours.steps_per_second / f.steps_per_second:.2f}x / "
            f"{f.cpu_total / ours.cpu_total:.2f}x"
            for name, f in results.items()
            if name != base
        ]
        print(f"  round {number}: " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument(
        "--temporal-executions",
        type=int,
        default=1000,
        help="Temporal's N: at its ~40 steps/s here, 3,000 diamonds take 5 minutes a run",
    )
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    engines = args.engines.split(",")
    if unknown := set(engines) - set(ENGINES):
        raise SystemExit(f"unknown engines: {', '.join(sorted(unknown))}")
    temporal = peers_dir() / "bin" / "temporal"
    if "temporal" in engines and temporal.exists():
        about = subprocess.run([temporal, "--version"], capture_output=True, text=True)  # noqa: S603
        print(about.stdout)
    print(f"{os.cpu_count()} cores; Kafka, PostgreSQL and Redis running beside every engine")
    rounds: list[dict[str, Figures]] = []
    for number in range(args.rounds):
        # Alternated, and each round in the other order: no engine always goes first.
        order = engines if number % 2 == 0 else engines[::-1]
        results = {
            name: run_one(
                name,
                args.temporal_executions if name == "temporal" else args.executions,
                args.latency_runs,
            )
            for name in order
        }
        rounds.append({name: results[name] for name in engines})
    table([figures for results in rounds for figures in results.values()])
    for base in (e for e in ("stepstream-one", "stepstream-split") if e in engines):
        ratios(rounds, base)


if __name__ == "__main__":
    main()
