"""Commands on workflow definitions: check and plan one, register one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from stepstream.cli.errors import CommandFailed, invalid
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.workflows import WorkflowDefinition


def read_definition(file: Path, step_types: set[str] | None = None) -> WorkflowDefinition:
    """The validated definition in FILE, or exit 2 listing every problem."""
    from stepstream.workflows import InvalidDefinition, format_for, parse_definition

    try:
        return parse_definition(file.read_text(), format_for(file.name), step_types)
    except InvalidDefinition as problems:
        raise invalid_definition(file, problems.problems) from None


def invalid_definition(file: Path, problems: Iterable[object]) -> CommandFailed:
    listed = "\n".join(f"  {problem}" for problem in problems)
    return invalid(f"{file}: invalid workflow definition\n{listed}")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--steps",
    "step_modules",
    multiple=True,
    help="A module defining step packages whose types FILE may use (repeatable).",
)
@output_option
def register(file: Path, step_modules: tuple[str, ...], output: str) -> None:
    """Validate a definition FILE and publish it to every worker.

    A step without a queue must have a type that is built in, comes from an installed
    step package or one named with --steps, or is run by a live worker (`stepstream
    workers`). A step with a queue is checked against the live workers serving that
    queue: refused if none of them runs its type; on a queue no live worker serves,
    any type is accepted, with a warning (its workers may start later)."""
    import asyncpg

    from stepstream.infra.definition_store import save_definition
    from stepstream.steps.builtin import default_registry
    from stepstream.steps.maintenance import STEP_TYPES as MAINTENANCE_STEP_TYPES
    from stepstream.steps.packages import load_packages
    from stepstream.streams.announcements import Served, read_announcements
    from stepstream.streams.definitions import DefinitionConflict, register_definition
    from stepstream.streams.topics import TopicNames, declare_topics
    from stepstream.workflows.definition import with_type_defaults
    from stepstream.workflows.validation import check_queue_steps

    settings = load_settings()
    packages = load_packages(step_modules)
    packaged = {step_type for package in packages for step_type in package.handlers}
    names = TopicNames.for_prefix(settings.topic_prefix)
    served = Served.by(run(read_announcements(settings.kafka_bootstrap_servers, names.workers)))
    known = {*default_registry(), *MAINTENANCE_STEP_TYPES, *packaged, *served.step_types}
    definition = read_definition(file, known)
    problems, warnings = check_queue_steps(definition, served.queue_types)
    if problems:
        raise invalid_definition(file, problems)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    defaults = {t: d for package in packages for t, d in package.defaults.items()}
    definition = with_type_defaults(definition, defaults)

    async def publish() -> bool:
        await declare_topics(
            settings.kafka_bootstrap_servers,
            names,
            settings.topic_partitions,
            settings.replication_factor,
            queues={step.queue for step in definition.steps if step.queue is not None},
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
        fresh = run(publish())
    except DefinitionConflict as conflict:
        raise invalid(str(conflict)) from None
    state = "registered" if fresh else "already registered"
    if output == "json":
        print_json({"status": state, "id": definition.id, "version": definition.version})
    else:
        click.echo(f"{state}: {definition.id} version {definition.version}")


@click.command("plan")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "-o",
    "output_format",
    type=click.Choice(["text", "mermaid", "dot", "json"]),
    default="text",
    help="text, a Mermaid or Graphviz graph, or the plan as JSON.",
)
def plan_command(file: Path, output_format: str) -> None:
    """Validate a definition FILE and print its execution plan (exit 2 if invalid)."""
    from stepstream.workflows import describe, plan, to_dot, to_mermaid

    definition = read_definition(file)
    if output_format == "json":
        expected = plan(definition)
        print_json(
            {
                "id": definition.id,
                "version": definition.version,
                "levels": [list(level) for level in expected.levels],
                "critical_path": list(expected.critical_path),
            }
        )
        return
    render = {"text": describe, "mermaid": to_mermaid, "dot": to_dot}[output_format]
    click.echo(render(definition))
