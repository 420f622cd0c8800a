"""`stepstream events`: send events from outside to waiting executions, signal one
execution, and list the events nothing took."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from stepstream.cli.errors import invalid
from stepstream.cli.support import load_settings, output_option, print_json, run


def _payload(raw: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError as error:
        raise invalid(f"--payload is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise invalid("--payload must be a JSON object")
    return payload


@click.group(invoke_without_command=True)
@click.option("--unmatched", is_flag=True, help="List the events no wait took in time.")
@click.option("--tenant", default=None, help="Only this tenant's.")
@click.option("--name", default=None, help="Only events of this name.")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@output_option
@click.pass_context
def events(
    context: click.Context,
    unmatched: bool,
    tenant: str | None,
    name: str | None,
    limit: int,
    output: str,
) -> None:
    """Events from outside: `send` one, `signal` an execution, or list with --unmatched
    those that no wait took within their time to live."""
    if context.invoked_subcommand is not None:
        return
    if not unmatched:
        click.echo(context.get_help())
        return
    found = run(_unmatched(tenant, name, limit))
    if output == "json":
        print_json([asdict(event) for event in found])
        return
    for event in found:
        payload = json.dumps(event.payload, separators=(",", ":"))
        click.echo(
            f"{event.expired_at:%Y-%m-%d %H:%M:%S} {event.tenant_id} {event.name} "
            f"{event.scope}={event.correlation_key} id={event.event_id} {payload}"
        )
    if not found:
        click.echo("no unmatched events")


async def _unmatched(tenant: str | None, name: str | None, limit: int) -> list[Any]:
    import asyncpg

    from stepstream.infra.unmatched_events import list_unmatched

    connection = await asyncpg.connect(load_settings().database_url)
    try:
        return await list_unmatched(connection, tenant, name, limit)
    finally:
        await connection.close()


@events.command()
@click.argument("name")
@click.argument("correlation_key")
@click.option("--tenant", required=True, help="The tenant whose executions may take it.")
@click.option("--payload", default="{}", show_default=True, help="A JSON object: the output.")
@click.option("--event-id", default=None, help="Your id for it: resent, it is applied once.")
@click.option("--ttl", "ttl_seconds", type=float, default=None, help="Seconds to hold it.")
def send(
    name: str,
    correlation_key: str,
    tenant: str,
    payload: str,
    event_id: str | None,
    ttl_seconds: float | None,
) -> None:
    """Send event NAME for the wait whose correlation key is CORRELATION_KEY."""
    body = _payload(payload)

    async def sending() -> str:
        from stepstream.client import EventNotSent, WorkflowClient

        async with WorkflowClient(load_settings(), follow_outcomes=False) as client:
            try:
                return await client.send_event(
                    name, correlation_key, body, tenant, event_id, ttl_seconds, "cli"
                )
            except EventNotSent as refused:
                raise invalid(str(refused)) from None

    click.echo(f"sent {name} for {correlation_key} (event id {run(sending())})")


@events.command()
@click.argument("execution_id")
@click.argument("name")
@click.option("--payload", default="{}", show_default=True, help="A JSON object: the output.")
@click.option("--event-id", default=None, help="Your id for it: resent, it is applied once.")
def signal(execution_id: str, name: str, payload: str, event_id: str | None) -> None:
    """Send event NAME to EXECUTION_ID, for its step that waits for NAME."""
    body = _payload(payload)

    async def sending() -> str:
        from stepstream.client import EventNotSent, WorkflowClient

        async with WorkflowClient(load_settings(), follow_outcomes=False) as client:
            try:
                return await client.signal(execution_id, name, body, event_id=event_id)
            except EventNotSent as refused:
                raise invalid(str(refused)) from None

    click.echo(f"signalled {name} to {execution_id} (event id {run(sending())})")
