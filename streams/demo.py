"""`stepstream run` / `make run`: a worker runs the reference workflow, followed live.

The maintenance steps are stood in for by `sleep` steps (examples/
maintenance-request-sleep.yaml) until the real ones exist; the output says so.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from rich.console import Console

from streams.client import WorkflowClient
from streams.engine import default_data_dir
from streams.progress import follow
from streams.settings import Settings
from streams.worker_process import WorkerProcess, prepare, wait_until_ready
from workflows import describe, parse_definition, plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "maintenance-request-sleep.yaml"


async def run_demo(settings: Settings) -> int:
    console = Console()
    definition = parse_definition(EXAMPLE.read_text())
    seconds = {s.id: float(s.config.get("seconds", 0)) for s in definition.steps}
    console.print(f"[bold]stepstream run[/bold]: {definition.name}")
    console.print("The maintenance steps are stood in for by `sleep` steps until they exist.\n")
    console.print(describe(definition, seconds) + "\n", markup=False)

    await prepare(settings, definition)
    workdir = default_data_dir("run")
    worker = WorkerProcess("run-worker", {**os.environ, **settings.as_environment()}, workdir)
    console.print(f"worker started (pid {worker.process.pid}, log {worker.log_path})")
    try:
        await wait_until_ready(settings, [worker], timeout=120)
        console.print("worker ready\n")
        execution_id = f"run-{uuid.uuid4()}"
        async with WorkflowClient(settings, follow_outcomes=False) as client:

            async def start() -> None:
                await client.start_workflow(
                    definition.id,
                    {"title": "Leaking tap in unit 4B"},
                    "tenant-demo",
                    "user-demo",
                    execution_id,
                )
                await client.flush()

            order = list(definition.graph.order)
            view = await follow(settings, execution_id, start, order, console, timeout=120)
    finally:
        worker.stop()

    steps = view.steps.values()
    started = min(s.ready_at or 0 for s in steps)
    finished = max(s.finished_at or 0 for s in steps)
    expected = plan(definition, seconds)
    console.print(
        f"wall time {(finished - started) / 1000:.2f} s; the steps' sequential sum "
        f"{expected.total_duration:.2f} s; critical path {expected.critical_path_duration:.2f} s "
        f"({' -> '.join(expected.critical_path)})"
    )
    console.print(f"execution {execution_id}: [bold]{view.outcome}[/bold] {view.detail}")
    return 0 if view.outcome == "completed" else 1
