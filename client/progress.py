"""Live progress of one execution in the terminal, and the per-step timing report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from stepstream.client.watch import ExecutionView, ExecutionWatcher
from stepstream.streams.settings import Settings

STATUS_STYLE = {
    "waiting": "dim",
    "running": "yellow",
    "completed": "green",
    "retrying": "yellow",
    "failed": "red",
    "timed_out": "red",
    "skipped": "cyan",
}


def step_table(view: ExecutionView, order: list[str], origin_ms: int | None = None) -> Table:
    table = Table(
        title=f"execution {view.execution_id}" + (f": {view.outcome}" if view.outcome else "")
    )
    for column in ("step", "status", "attempt", "worker", "started", "finished", "took"):
        table.add_column(column)
    # Times are shown from the first release seen, or, for a workflow of queue steps only
    # (whose releases go to their queues, not watched here), from the first start.
    known = [s.ready_at or s.started_at for s in view.steps.values()]
    origin = origin_ms or min((t for t in known if t is not None), default=None)
    for step_id in order:
        step = view.steps.get(step_id)
        if step is None:
            table.add_row(step_id, "[dim]waiting[/dim]", "", "", "", "", "")
            continue
        started = f"+{step.started_at - origin} ms" if step.started_at and origin else ""
        finished = f"+{step.finished_at - origin} ms" if step.finished_at and origin else ""
        took = (
            f"{step.finished_at - step.started_at} ms"
            if step.finished_at and step.started_at
            else ""
        )
        style = STATUS_STYLE.get(step.status, "")
        table.add_row(
            step_id,
            f"[{style}]{step.status}[/{style}]",
            str(step.attempt),
            step.worker,
            started,
            finished,
            took,
        )
    return table


async def follow(
    settings: Settings,
    execution_id: str,
    start: Callable[[], Awaitable[object]],
    order: list[str],
    console: Console,
    timeout: float,
) -> ExecutionView:
    """Open the watcher, run `start`, and redraw the step table until the execution ends."""
    import asyncio

    view = ExecutionView(execution_id)
    async with ExecutionWatcher(settings, execution_id) as watcher:
        await start()
        with Live(step_table(view, order), console=console, refresh_per_second=10) as live:
            async with asyncio.timeout(timeout):
                async for event in watcher.events():
                    view.apply(event)
                    for step_id in view.steps:
                        if step_id not in order:
                            order.append(step_id)
                    live.update(step_table(view, order))
    return view
