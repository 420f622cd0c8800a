"""Commands on executions: start one, and read them back (status, describe, list) from
PostgreSQL, where the persister keeps their current state."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from stepstream.cli.errors import ExitCode, invalid
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.infra.executions import ExecutionRecord
from stepstream.streams.settings import Settings


@click.command()
@click.argument("workflow_id")
@click.option("--input", "input_json", default="{}", help="Workflow input, a JSON object.")
@click.option("--tenant", required=True)
@click.option("--user", required=True)
@click.option("--execution-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--version", default=0, help="Definition version (default: latest).")
@click.option("--wait", is_flag=True, help="Follow the execution until it ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds for the whole command.")
@output_option
def start(
    workflow_id: str,
    input_json: str,
    tenant: str,
    user: str,
    execution_id: str | None,
    version: int,
    wait: bool,
    timeout: float,
    output: str,
) -> None:
    """Start WORKFLOW_ID; print its execution id (and with --wait, how it ended: exit 0
    completed, 1 failed or rejected)."""
    import uuid

    from stepstream.workflows.requests import check_start

    settings = load_settings()
    try:
        workflow_input = json.loads(input_json)
    except json.JSONDecodeError as error:
        raise invalid(f"--input is not JSON: {error}") from None
    if not isinstance(workflow_input, dict):
        raise invalid(f"--input must be a JSON object, not {type(workflow_input).__name__}")
    execution_id = execution_id or str(uuid.uuid4())
    refusal = check_start(
        execution_id, workflow_id, tenant, user, input_json, settings.max_input_bytes
    )
    if refusal is not None:  # refused here, before anything is published
        raise invalid(f"{refusal.code}: {refusal.reason}")
    request = (workflow_id, workflow_input, tenant, user, execution_id, version)
    sys.exit(run(_start(settings, request, wait, output, timeout), timeout))


async def _start(
    settings: Settings, request: tuple[Any, ...], wait: bool, output: str, timeout: float
) -> int:
    from rich.console import Console

    from stepstream.client import WorkflowClient
    from stepstream.client.progress import follow

    workflow_id, _, _, _, execution_id, version = request
    async with WorkflowClient(settings, follow_outcomes=wait and output == "json") as client:
        if await client.definition(workflow_id, version) is None:
            which = f"{workflow_id} version {version}" if version else workflow_id
            raise invalid(f"workflow {which} is not registered (`stepstream register FILE`)")

        async def send() -> None:
            await client.start_workflow(*request)
            await client.flush()

        if not wait:
            await send()
            if output == "json":
                print_json({"execution_id": execution_id})
            else:
                click.echo(execution_id)
            return ExitCode.OK
        if output == "json":
            await send()
            outcome = await client.wait_for(execution_id, timeout)
            print_json({"execution_id": execution_id, "status": outcome.status, **outcome.record})
            status: str | None = outcome.status
        else:
            view = await follow(settings, execution_id, send, [], Console(), timeout)
            detail = f" ({view.detail})" if view.detail else ""
            click.echo(f"{execution_id}: {view.outcome}{detail}")
            status = view.outcome
    return ExitCode.OK if status == "completed" else ExitCode.FAILED


async def _describe(settings: Settings, execution_id: str) -> ExecutionRecord:
    import asyncpg

    from stepstream.infra.executions import describe_execution

    connection = await asyncpg.connect(settings.database_url)
    try:
        record = await describe_execution(connection, execution_id)
    finally:
        await connection.close()
    if record is None:
        raise invalid(
            f"no execution {execution_id} is recorded (the persister writes it within a"
            " second of its start; check the id and STEPSTREAM_TOPIC_PREFIX)"
        )
    return record


def _took(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    return f"{delta.total_seconds() * 1000:.0f} ms"


@click.command()
@click.argument("execution_id")
@output_option
def status(execution_id: str, output: str) -> None:
    """EXECUTION_ID's state and each step's latest attempt, from PostgreSQL."""
    from rich.console import Console
    from rich.table import Table

    record = run(_describe(load_settings(), execution_id))
    latest = {step.step_id: step for step in record.steps}  # ordered by attempt
    if output == "json":
        print_json({**record.as_dict(), "steps": [vars(step) for step in latest.values()]})
        return
    replayed = f", replayed {record.replays}x" if record.replays else ""
    table = Table(
        title=f"{execution_id}: {record.status} "
        f"({record.workflow_id} v{record.workflow_version}{replayed})"
    )
    for column in ("step", "status", "attempt", "took", "error"):
        table.add_column(column)
    for step_id in record.step_order or list(latest):
        step = latest.get(step_id)
        if step is None:
            table.add_row(step_id, "not finished", "", "", "")
        else:
            took = _took(step.started_at, step.finished_at)
            table.add_row(step_id, step.status, str(step.attempt), took, step.error or "")
    Console().print(table)
    if record.error:
        click.echo(f"error: {record.error}")


@click.command()
@click.argument("execution_id")
@output_option
def describe(execution_id: str, output: str) -> None:
    """EXECUTION_ID in full: input, outputs, every step attempt as the coordinator decided
    it (completed, failed, timed_out) with its timings, output and error, and the reports
    it ignored, with why; from PostgreSQL."""
    from rich.console import Console
    from rich.table import Table

    record = run(_describe(load_settings(), execution_id))
    if output == "json":
        print_json(record.as_dict())
        return
    for name in ("workflow_id", "workflow_version", "status", "tenant_id", "user_id", "replays"):
        click.echo(f"{name + ':':<18}{getattr(record, name)}")
    click.echo(f"{'started_at:':<18}{record.started_at.isoformat()}")
    if record.finished_at:
        click.echo(f"{'finished_at:':<18}{record.finished_at.isoformat()}")
    if record.error:
        click.echo(f"{'error:':<18}{record.error}")
    click.echo(f"{'input:':<18}{json.dumps(record.input)}")
    if record.outputs is not None:
        click.echo(f"{'outputs:':<18}{json.dumps(record.outputs)}")
    if record.parent:
        link = record.parent
        started_by = f"{link['parent_execution_id']} (step {link['step_id']}, attempt "
        click.echo(f"{'parent:':<18}{started_by}{link['attempt']}, depth {link['depth']})")
    for child in record.children:
        started = f"{child['child_execution_id']} ({child['workflow_id']}), started by step"
        click.echo(f"{'child:':<18}{started} {child['step_id']} attempt {child['attempt']}")
    table = Table(title="step attempts")
    for column in ("step", "attempt", "type", "status", "worker", "took", "output / error"):
        table.add_column(column)
    for step in record.steps:
        result = step.error if step.error else json.dumps(step.output)
        took = _took(step.started_at, step.finished_at)
        table.add_row(
            step.step_id,
            str(step.attempt),
            step.step_type,
            step.status,
            step.worker or "",
            took,
            result,
        )
    Console().print(table)
    if record.ignored:
        ignored = Table(title="reports ignored by the coordinator (not outcomes)")
        for column in ("step", "attempt", "report", "worker", "reason"):
            ignored.add_column(column)
        for report in record.ignored:
            ignored.add_row(
                report.step_id,
                str(report.attempt),
                report.report,
                report.worker or "",
                report.reason,
            )
        Console().print(ignored)
    if record.tasks:
        tasks = Table(title="human tasks")
        for column in ("step", "attempt", "for", "status", "answered by", "at", "answer"):
            tasks.add_column(column)
        for task in record.tasks:
            closed = f"{task.closed_at:%Y-%m-%d %H:%M:%S}" if task.closed_at else ""
            answer = json.dumps(task.answer) if task.answer is not None else ""
            tasks.add_row(
                task.step_id,
                str(task.attempt),
                task.assignee or "anyone",
                task.status,
                task.answered_by or "",
                closed,
                answer,
            )
        Console().print(tasks)
    unfinished = [s for s in record.step_order if s not in {a.step_id for a in record.steps}]
    if unfinished:
        click.echo(f"not finished: {', '.join(unfinished)}")


@click.command("list")
@click.option("--workflow", "workflow_id", default=None, help="Only this workflow.")
@click.option(
    "--status",
    type=click.Choice(["running", "completed", "failed", "cancelled", "rejected"]),
    default=None,
    help="Only executions in this state.",
)
@click.option("--tenant", default=None, help="Only this tenant's executions.")
@click.option("--since", type=click.DateTime(), default=None, help="Started at or after.")
@click.option("--until", type=click.DateTime(), default=None, help="Started before.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--page-token", default=None, help="From the previous page's last line.")
@output_option
def list_command(
    workflow_id: str | None,
    status: str | None,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    page_token: str | None,
    output: str,
) -> None:
    """Executions, newest first, from PostgreSQL; a page at a time."""
    import asyncpg
    from rich.console import Console
    from rich.table import Table

    from stepstream.infra.executions import Page, decode_token, list_executions

    settings = load_settings()
    if page_token:
        try:
            decode_token(page_token)
        except ValueError as error:
            raise invalid(str(error)) from None

    async def query() -> Page:
        connection = await asyncpg.connect(settings.database_url)
        try:
            return await list_executions(
                connection,
                workflow_id=workflow_id,
                status=status,
                tenant_id=tenant,
                since=since.astimezone() if since else None,
                until=until.astimezone() if until else None,
                limit=limit,
                after=page_token,
            )
        finally:
            await connection.close()

    page = run(query())
    if output == "json":
        executions = [record.as_dict() for record in page.executions]
        print_json({"executions": executions, "next_page_token": page.next_token})
        return
    table = Table()
    for column in ("execution", "workflow", "status", "tenant", "started", "error"):
        table.add_column(column)
    for record in page.executions:
        table.add_row(
            record.execution_id,
            f"{record.workflow_id} v{record.workflow_version}",
            record.status,
            record.tenant_id,
            record.started_at.isoformat(timespec="seconds"),
            record.error or "",
        )
    Console().print(table)
    if page.next_token:
        click.echo(f"more: --page-token {page.next_token}")
