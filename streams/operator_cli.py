"""Operators' commands: recover executions (`replay`) and events (`dead-letters`)."""

from __future__ import annotations

import asyncio
import sys

import click

from streams.cli_support import load_settings


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
    from streams.client import ReplayRefused, WorkflowClient
    from workflows import ReplayAction

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
    from streams import dead_letters as letters_module

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
