"""`stepstream run` / `make run`: a worker runs the reference maintenance workflow
(version 3) on the demo data, followed live. When the execution waits for the
technician's acceptance, what it waits for is printed and the acceptance is sent, as the
technician's app would; then the request, its priority, the notification, the assigned
technician and the acceptance are printed."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import asyncpg
from rich.console import Console

from stepstream.client.progress import follow
from stepstream.client.watch import read_checkpoint
from stepstream.client.workflow_client import WorkflowClient
from stepstream.demo.data import seed
from stepstream.demo.worker_process import WorkerProcess, prepare, wait_until_ready
from stepstream.streams.engine import default_data_dir
from stepstream.streams.events import now_ms
from stepstream.streams.settings import Settings
from stepstream.workflows import StepStatus, describe, parse_definition, plan, state_from_dict
from stepstream.workflows.explain import explain

EXAMPLE = Path(__file__).resolve().parent / "examples" / "maintenance-request-v3.yaml"
WAITING_STEP = "step-6"  # waits for technician-accepted
TITLE = "Water leaking under the kitchen sink"


# Earlier demo runs' requests are finished first, so technicians' capacity frees up and
# `make run` can run any number of times.
FINISH_EARLIER_DEMOS = """
WITH finished AS (
    UPDATE maintenance_requests SET status = 'done', updated_at = now()
    WHERE tenant_id = 'tenant-demo' AND status = 'assigned'
    RETURNING technician_id
)
UPDATE technicians t SET workload = t.workload - f.count
FROM (SELECT technician_id, count(*) AS count FROM finished GROUP BY technician_id) f
WHERE t.id = f.technician_id
"""


async def demo_input(database_url: str) -> dict[str, object]:
    connection = await asyncpg.connect(database_url)
    try:
        await seed(connection)
        await connection.execute(FINISH_EARLIER_DEMOS)
        row = await connection.fetchrow(
            "SELECT p.id AS property_id, a.id AS asset_id FROM properties p"
            " JOIN assets a ON a.property_id = p.id"
            " WHERE p.name = 'Lindenhof' AND a.name = 'Kitchen sink'"
        )
    finally:
        await connection.close()
    return {
        "property_id": row["property_id"],
        "asset_id": row["asset_id"],
        "title": TITLE,
        "description": "The cabinet floor is wet and the drip is getting faster.",
    }


async def accept_when_waiting(
    settings: Settings, client: WorkflowClient, execution_id: str, console: Console
) -> None:
    """Once the execution waits for the technician's acceptance: say what it waits for,
    and send the acceptance as the technician's app would."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stored = await read_checkpoint(settings, execution_id)
        if stored is not None:
            state = state_from_dict(stored["state"])
            if state.steps[WAITING_STEP].status is StepStatus.RUNNING:
                break
        await asyncio.sleep(0.2)  # the checkpoint's changelog, read again
    else:
        console.print(f"{WAITING_STEP} never began to wait")
        return
    console.print(f"{WAITING_STEP}: {explain(state, now_ms(), WAITING_STEP)[WAITING_STEP]}")
    request_id = state.steps["step-1"].output["request_id"]
    technician = state.steps["step-4"].output["technician_id"]
    event_id = await client.send_event(
        "technician-accepted",
        str(request_id),
        {"technician_id": technician, "accepted_at": now_ms()},
        "tenant-demo",
        event_id=f"accepted-{execution_id}",
        sender="demo technician app",
    )
    console.print(f"sent technician-accepted for request #{request_id} (event {event_id})")


async def run_demo(settings: Settings) -> int:
    console = Console()
    definition = parse_definition(EXAMPLE.read_text())
    console.print(f"[bold]stepstream run[/bold]: {definition.name}\n")
    console.print(describe(definition) + "\n", markup=False)

    workflow_input = await demo_input(settings.database_url)
    await prepare(settings, definition)
    worker = WorkerProcess(
        "run-worker", {**os.environ, **settings.as_environment()}, default_data_dir("run")
    )
    console.print(f"worker started (pid {worker.process.pid}, log {worker.log_path})")
    try:
        await wait_until_ready(settings, [worker], timeout=120)
        console.print("worker ready\n")
        execution_id = f"run-{uuid.uuid4()}"
        async with WorkflowClient(settings) as client:
            answering: list[asyncio.Task[None]] = []

            async def start() -> None:
                await client.start_workflow(
                    definition.id, workflow_input, "tenant-demo", "user-demo", execution_id
                )
                await client.flush()
                answering.append(
                    asyncio.create_task(
                        accept_when_waiting(settings, client, execution_id, console)
                    )
                )

            order = list(definition.graph.order)
            view = await follow(settings, execution_id, start, order, console, timeout=120)
            await asyncio.gather(*answering)
            outcome = await client.wait_for(execution_id, timeout=30)
    finally:
        worker.stop()

    console.print()
    ran = [s for s in view.steps.values() if s.ready_at is not None and s.finished_at]
    # A skipped step has no times: counted as 0, it made the wall time an epoch date.
    started = min((s.ready_at or 0 for s in ran), default=0)
    finished = max((s.finished_at or 0 for s in ran), default=0)
    expected = plan(definition)
    console.print(
        f"wall time {(finished - started)} ms for {len(order)} steps in "
        f"{len(expected.levels)} levels ({' -> '.join(expected.critical_path)} "
        "is the critical path)"
    )
    if outcome.status != "completed":
        console.print(
            f"execution {execution_id}: [bold red]{outcome.status}[/bold red] {view.detail}"
        )
        return 1
    out = outcome.outputs
    console.print(f"request       #{out['step-1']['request_id']}: {TITLE!r}")
    console.print(
        f"priority      {out['step-2']['priority']} (source: "
        f"{out['step-2']['priority_source']}; {out['step-2']['reason']})",
        markup=False,
    )
    console.print(
        f"notification  #{out['step-3']['notification_id']} via "
        f"{out['step-3']['channel']} to {out['step-3']['recipient']}"
    )
    console.print(
        f"technician    {out['step-4']['technician']} ({out['step-4']['distance_km']} km away)"
    )
    accepted = out[WAITING_STEP]
    console.print(f"accepted      by technician #{accepted['technician_id']} (an event)")
    console.print(f"execution {execution_id}: [bold]completed[/bold]")
    return 0
