"""`stepstream tasks`: the human tasks open for a tenant or an assignee, one task with
its form, and answering one."""

from __future__ import annotations

import json
from typing import Any

import click

from stepstream.cli.errors import invalid
from stepstream.cli.support import load_settings, output_option, print_json, run


@click.group(invoke_without_command=True)
@click.option("--tenant", default=None, help="Only this tenant's.")
@click.option("--assignee", default=None, help="Only theirs (and those anyone may answer).")
@click.option("--limit", default=100, show_default=True, help="At most this many, oldest first.")
@output_option
@click.pass_context
def tasks(
    context: click.Context, tenant: str | None, assignee: str | None, limit: int, output: str
) -> None:
    """Human tasks: list the open ones, `show` one with its form, `answer` one."""
    if context.invoked_subcommand is not None:
        return
    found = run(_with_client(lambda client: client.tasks.open(tenant, assignee, limit)))
    if output == "json":
        print_json([task.as_dict() for task in found])
        return
    for task in found:
        due = f", due {task.due_at:%Y-%m-%d %H:%M:%S}" if task.due_at else ""
        click.echo(
            f"{task.execution_id} {task.step_id} (attempt {task.attempt}) {task.tenant_id} "
            f"for {task.assignee or 'anyone'}: {task.title or task.workflow_id}{due}"
        )
    if not found:
        click.echo("no open tasks")


@tasks.command()
@click.argument("execution_id")
@click.argument("step_id")
@output_option
def show(execution_id: str, step_id: str, output: str) -> None:
    """The task of STEP_ID in EXECUTION_ID: whose it is, its form, how it ended."""
    task = run(_with_client(lambda client: client.tasks.find(execution_id, step_id)))
    if task is None:
        raise invalid(f"no task is recorded for {execution_id}/{step_id}")
    if output == "json":
        print_json(task.as_dict())
        return
    click.echo(f"{task.title or task.step_id}: {task.status}, for {task.assignee or 'anyone'}")
    if task.answered_by:
        click.echo(f"answered by {task.answered_by} at {task.closed_at:%Y-%m-%d %H:%M:%S}")
        click.echo(f"answer: {json.dumps(task.answer)}")
    click.echo("form:")
    click.echo(json.dumps(task.form, indent=2))


@tasks.command()
@click.argument("execution_id")
@click.argument("step_id")
@click.option("--answer", "raw", required=True, help="The answer, as JSON (it must fit the form).")
@click.option("--by", "answered_by", required=True, help="Who answers.")
def answer(execution_id: str, step_id: str, raw: str, answered_by: str) -> None:
    """Answer the open task of STEP_ID in EXECUTION_ID. An answer that does not match the
    form is refused with the reasons, and nothing is sent."""
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise invalid(f"--answer is not JSON: {error}") from None

    async def answering(client: Any) -> int:
        from stepstream.client import AnswerRefused

        try:
            attempt: int = await client.tasks.answer(execution_id, step_id, body, answered_by)
        except AnswerRefused as refused:
            raise invalid(f"refused: {refused}") from None
        await client.flush()
        return attempt

    attempt = run(_with_client(answering))
    click.echo(f"answered {execution_id}/{step_id} (attempt {attempt}) as {answered_by}")


async def _with_client(action: Any) -> Any:
    from stepstream.client import WorkflowClient

    async with WorkflowClient(load_settings(), follow_outcomes=False) as client:
        return await action(client)
