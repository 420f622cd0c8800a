"""The `stepstream` command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import click

from stepstream.cli.operators import dead_letters, replay, stalled
from stepstream.cli.support import load_settings

SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "infra" / "local" / "services.sh"


@click.group()
@click.version_option(package_name="stepstream", message="%(prog)s %(version)s")
def main() -> None:
    """stepstream: DAG workflows as event streams on Apache Kafka."""


main.add_command(replay)
main.add_command(dead_letters)
main.add_command(stalled)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("action", type=click.Choice(["up", "down", "status", "env"]))
@click.argument("names", nargs=-1, type=click.Choice(["kafka", "postgres", "redis"]))
def services(action: str, names: tuple[str, ...]) -> None:
    """Start, stop or inspect the local Kafka, PostgreSQL and Redis (`up` and `down` act
    on the services named, or on all three)."""
    if not SERVICES_SCRIPT.is_file():
        raise click.ClickException(f"{SERVICES_SCRIPT} is missing: run from a source checkout")
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(SERVICES_SCRIPT), action, *names]
    completed = subprocess.run(command, env=env, check=False)  # noqa: S603
    sys.exit(completed.returncode)


@main.command()
def smoke() -> None:
    """Round-trip data through Kafka, PostgreSQL and Redis and say what happened."""
    from stepstream.cli.smoke import run_smoke

    for line in asyncio.run(run_smoke(load_settings())):
        click.echo(line)


@main.command()
def run() -> None:
    """The main job: a worker runs the reference workflow, followed live."""
    from stepstream.demo.run import run_demo

    sys.exit(asyncio.run(run_demo(load_settings())))


@main.command()
@click.option("--name", default=None, help="Worker name (default: host-pid).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Table store directory (default: /var/tmp/stepstream/workers/NAME).",
)
@click.option("--concurrency", default=32, show_default=True, help="Steps run at once.")
@click.option("--store", default="rocksdb://", show_default=True, help="Faust table store.")
@click.option("--loglevel", default="warn", show_default=True)
def worker(
    name: str | None, data_dir: Path | None, concurrency: int, store: str, loglevel: str
) -> None:
    """Run a worker: intake and coordinator (faust agents), executor and persister."""
    from stepstream.streams.engine import WorkerOptions, default_data_dir
    from stepstream.worker import run_worker

    settings = load_settings()
    name = name or f"{os.uname().nodename}-{os.getpid()}"
    options = WorkerOptions(name, data_dir or default_data_dir(name), store, concurrency)
    run_worker(settings, options, loglevel)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def register(file: Path) -> None:
    """Validate a definition FILE and publish it to every worker."""
    import asyncpg

    from stepstream.infra.definition_store import save_definition
    from stepstream.steps.builtin import default_registry
    from stepstream.steps.maintenance import STEP_TYPES as MAINTENANCE_STEP_TYPES
    from stepstream.streams.definitions import DefinitionConflict, register_definition
    from stepstream.streams.topics import TopicNames, declare_topics
    from stepstream.workflows import InvalidDefinition, format_for, parse_definition

    settings = load_settings()
    try:
        known = {*default_registry(), *MAINTENANCE_STEP_TYPES}
        definition = parse_definition(file.read_text(), format_for(file.name), known)
    except InvalidDefinition as invalid:
        click.echo(f"{file}: invalid workflow definition", err=True)
        for problem in invalid.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    names = TopicNames.for_prefix(settings.topic_prefix)

    async def publish() -> bool:
        await declare_topics(
            settings.kafka_bootstrap_servers,
            names,
            settings.topic_partitions,
            settings.replication_factor,
        )
        fresh = await register_definition(
            settings.kafka_bootstrap_servers, names.definitions, definition
        )
        connection = await asyncpg.connect(settings.database_url)
        try:
            await save_definition(connection, definition)
        finally:
            await connection.close()
        return fresh

    try:
        fresh = asyncio.run(publish())
    except DefinitionConflict as conflict:
        raise click.ClickException(str(conflict)) from None
    state = "registered" if fresh else "already registered"
    click.echo(f"{state}: {definition.id} version {definition.version}")


@main.command()
@click.argument("workflow_id")
@click.option("--input", "input_json", default="{}", help="Workflow input, a JSON object.")
@click.option("--tenant", required=True)
@click.option("--user", required=True)
@click.option("--execution-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--version", default=0, help="Definition version (default: latest).")
@click.option("--wait", is_flag=True, help="Follow the execution live until it ends.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait.")
def start(
    workflow_id: str,
    input_json: str,
    tenant: str,
    user: str,
    execution_id: str | None,
    version: int,
    wait: bool,
    timeout: float,
) -> None:
    """Start WORKFLOW_ID; print its execution id (and with --wait, how it ended)."""
    import json
    import uuid

    from rich.console import Console

    from stepstream.cli.progress import follow
    from stepstream.client.workflow_client import WorkflowClient
    from stepstream.workflows.requests import check_start

    settings = load_settings()
    try:
        workflow_input = json.loads(input_json)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--input") from None
    if not isinstance(workflow_input, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    execution_id = execution_id or str(uuid.uuid4())
    refusal = check_start(
        execution_id, workflow_id, tenant, user, input_json, settings.max_input_bytes
    )
    if refusal is not None:  # refused here, before anything is published
        raise click.UsageError(f"{refusal.code}: {refusal.reason}")

    async def go() -> int:
        async with WorkflowClient(settings, follow_outcomes=False) as client:

            async def send() -> None:
                await client.start_workflow(
                    workflow_id, workflow_input, tenant, user, execution_id, version
                )
                await client.flush()

            if not wait:
                await send()
                click.echo(execution_id)
                return 0
            view = await follow(settings, execution_id, send, [], Console(), timeout)
            click.echo(
                f"{execution_id}: {view.outcome}" + (f" ({view.detail})" if view.detail else "")
            )
            return 0 if view.outcome == "completed" else 1

    sys.exit(asyncio.run(go()))


@main.command()
@click.argument("execution_id")
def status(execution_id: str) -> None:
    """Per-step state of EXECUTION_ID, from its checkpoint."""
    from rich.console import Console
    from rich.table import Table

    from stepstream.client.watch import read_checkpoint
    from stepstream.workflows import state_from_dict

    stored = asyncio.run(read_checkpoint(load_settings(), execution_id))
    if stored is None:
        raise click.ClickException(f"no checkpoint for execution {execution_id}")
    state = state_from_dict(stored["state"])
    run = f", run {state.generation} (replayed)" if state.generation else ""
    table = Table(
        title=f"{execution_id}: {state.status} "
        f"({state.definition.id} v{state.definition.version}{run})"
    )
    for column in ("step", "status", "attempt", "took", "error"):
        table.add_column(column)
    for step_id in state.definition.graph.order:
        step = state.steps[step_id]
        took = (
            f"{step.finished_at_ms - step.started_at_ms} ms"
            if step.finished_at_ms and step.started_at_ms
            else ""
        )
        table.add_row(step_id, str(step.status), str(step.attempt), took, step.error or "")
    Console().print(table)


@main.group()
def db() -> None:
    """PostgreSQL: migrations."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the migrations that are missing (idempotent)."""
    import asyncpg

    from stepstream.infra.db import migrate

    async def run() -> list[str]:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await migrate(connection)
        finally:
            await connection.close()

    applied = asyncio.run(run())
    click.echo(f"applied {', '.join(applied)}" if applied else "database is up to date")


@db.command("seed")
def db_seed() -> None:
    """Load the demo properties, assets and technicians (once)."""
    import asyncpg

    from stepstream.demo.data import seed

    async def run() -> bool:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await seed(connection)
        finally:
            await connection.close()

    click.echo("demo data loaded" if asyncio.run(run()) else "demo data already present")


@main.command()
def stats() -> None:
    """Cache statistics of every worker (hits, misses, hit rate), from Redis."""
    import redis.asyncio as aioredis
    from rich.console import Console
    from rich.table import Table

    from stepstream.infra.cache import read_shared_stats

    settings = load_settings()

    async def read() -> dict[str, dict[str, int]]:
        client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2)
        try:
            return await read_shared_stats(client, settings.topic_prefix)
        finally:
            await client.aclose()

    table = Table(title="caches (all workers, since Redis started)")
    for column in ("cache", "hits", "misses", "hit rate", "entries in Redis"):
        table.add_column(column)
    for name, counts in sorted(asyncio.run(read()).items()):
        hits, misses = counts.get("hits", 0), counts.get("misses", 0)
        rate = f"{hits / (hits + misses):.1%}" if hits + misses else "-"
        table.add_row(name, str(hits), str(misses), rate, str(counts.get("entries", 0)))
    Console().print(table)

    from stepstream.client.watch import read_changelog

    starts = Table(title="workflow starts per tenant (rate limiting)")
    outcomes = ("allowed", "rejected", "deferred")
    for column in ("tenant", *outcomes):
        starts.add_column(column)
    for tenant, totals in sorted(asyncio.run(read_changelog(settings, "rate-stats")).items()):
        starts.add_row(tenant, *(str(totals.get(outcome, 0)) for outcome in outcomes))
    Console().print(starts)


@main.command("plan")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "output_format", type=click.Choice(["text", "mermaid", "dot"]), default="text"
)
def plan_command(file: Path, output_format: str) -> None:
    """Validate a definition FILE and print its execution plan (exit 2 if invalid)."""
    from stepstream.workflows import (
        InvalidDefinition,
        describe,
        format_for,
        parse_definition,
        to_dot,
        to_mermaid,
    )

    try:
        definition = parse_definition(file.read_text(), format_for(file.name))
    except InvalidDefinition as invalid:
        click.echo(f"{file}: invalid workflow definition", err=True)
        for problem in invalid.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    render = {"text": describe, "mermaid": to_mermaid, "dot": to_dot}[output_format]
    click.echo(render(definition))


if __name__ == "__main__":
    main()
