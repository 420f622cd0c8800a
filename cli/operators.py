"""Operators' commands: recover executions (`replay`, `stalled`) and events (`dead-letters`)."""

from __future__ import annotations

import asyncio
import sys

import click

from stepstream.cli.support import load_settings


@click.command()
@click.argument("execution_id")
@click.argument("action", type=click.Choice(["resume", "retry", "rerun-from"]))
@click.option("--step", "step_id", default=None, help="For rerun-from: the step to run again.")
@click.option("--by", "requested_by", default="", help="Who asks (for the audit trail).")
@click.option("--reason", default="", help="Why (for the audit trail).")
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--wait", is_flag=True, help="Wait until the execution ends again.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
def replay(
    execution_id: str,
    action: str,
    step_id: str | None,
    requested_by: str,
    reason: str,
    request_id: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Resume a stuck EXECUTION_ID, retry a failed one, or rerun one from a step."""
    from stepstream.client.workflow_client import ReplayRefused, WorkflowClient
    from stepstream.workflows import ReplayAction

    if (action == "rerun-from") != (step_id is not None):
        raise click.UsageError("--step is required with rerun-from, and only with it")

    async def go() -> int:
        async with WorkflowClient(load_settings(), follow_outcomes=wait) as client:
            try:
                run = await client.replay(
                    execution_id, ReplayAction(action), step_id, requested_by, reason, request_id
                )
            except ReplayRefused as refused:
                raise click.ClickException(str(refused)) from None
            if not wait:
                await client.flush()
                click.echo(f"{execution_id}: {action} requested (run {run})")
                return 0
            outcome = await client.wait_for(execution_id, timeout, run=run)
            click.echo(f"{execution_id}: run {run} {outcome.status}")
            return 0 if outcome.status == "completed" else 1

    sys.exit(asyncio.run(go()))


@click.command("dead-letters")
@click.option("--source-topic", default=None, help="Only letters from this topic.")
@click.option("--execution-id", default=None, help="Only letters of this execution.")
@click.option("--redrive", is_flag=True, help="Publish them again to their topics.")
def dead_letters(source_topic: str | None, execution_id: str | None, redrive: bool) -> None:
    """List dead letters; with --redrive, publish their original bytes again to their
    topics, once the cause is fixed (every consumer is idempotent)."""
    from stepstream.client import dead_letters as letters_module

    settings = load_settings()
    letters = asyncio.run(letters_module.read_letters(settings, source_topic, execution_id))
    for letter in letters:
        where = f"{letter.source_topic}/{letter.partition}/{letter.offset}"
        click.echo(f"{where} {letter.execution_id or '-'}: {letter.error}")
    if redrive:
        count = asyncio.run(letters_module.redrive(settings, letters))
        click.echo(f"re-driven {count} dead letter(s)")
    elif not letters:
        click.echo("no dead letters")


@click.command()
@click.option(
    "--all", "show_all", is_flag=True, help="Every running execution, not only stalled ones."
)
def stalled(show_all: bool) -> None:
    """Executions with outstanding steps and no progress beyond those steps' timeouts
    plus WORKFLOW_WATCHDOG_MARGIN_MS, with what each waits for. Workers' watchdogs
    announce their steps again on their own; this shows what they are looking at."""
    from stepstream.client.watch import read_checkpoints
    from stepstream.streams.events import now_ms
    from stepstream.workflows import state_from_dict
    from stepstream.workflows.stalls import waiting_on

    settings = load_settings()
    now = now_ms()
    shown = 0
    for execution_id, checkpoint in sorted(asyncio.run(read_checkpoints(settings)).items()):
        waiting = waiting_on(state_from_dict(checkpoint["state"]), settings.watchdog_margin_ms)
        if waiting and (show_all or waiting[0].deadline_ms <= now):
            shown += 1
            click.echo(f"{execution_id}: " + "; ".join(w.describe(now) for w in waiting))
    if not shown:
        click.echo("no stalled executions" if not show_all else "no running executions")
