"""Commands on workflow definitions: check and plan one, register one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from stepstream.cli.errors import CommandFailed, invalid
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.workflows import WorkflowDefinition


def read_definition(file: Path | None, step_types: set[str] | None = None) -> WorkflowDefinition:
    """The validated definition in FILE, its `use:` steps expanded from the registered
    templates, or exit 2 listing every problem."""
    from stepstream.workflows import InvalidDefinition, build_definition
    from stepstream.workflows.templates import traced

    raw = expanded(read_raw(file) if file is not None else {})
    try:
        return build_definition(raw, step_types)
    except InvalidDefinition as problems:
        raise invalid_definition(file, traced(problems.problems, raw)) from None


def read_raw(file: Path) -> Any:
    """FILE as data (YAML or JSON), or exit 2 with the syntax error."""
    from stepstream.workflows import InvalidDefinition, format_for
    from stepstream.workflows.loading import load_raw

    try:
        return load_raw(file.read_text(), format_for(file.name))
    except InvalidDefinition as problems:
        raise invalid_definition(file, problems.problems) from None


def expanded(raw: Any) -> Any:
    """The raw workflow with its `use:` steps expanded from the templates registered in
    PostgreSQL (read once, only when it uses some)."""
    from stepstream.workflows import InvalidDefinition
    from stepstream.workflows.templates import expand, used_templates

    wanted = used_templates(raw)
    if not wanted:
        return raw
    try:
        return expand(raw, run(_templates(wanted)))
    except InvalidDefinition as problems:
        raise invalid_definition(None, problems.problems) from None


async def _templates(ids: set[str]) -> dict[tuple[str, int], Any]:
    import asyncpg

    from stepstream.infra.template_store import load_templates

    connection = await asyncpg.connect(load_settings().database_url)
    try:
        return await load_templates(connection, ids)
    finally:
        await connection.close()


def invalid_definition(file: Path | None, problems: Iterable[object]) -> CommandFailed:
    listed = "\n".join(f"  {problem}" for problem in problems)
    return invalid(f"{file or 'the definition'}: invalid workflow definition\n{listed}")


@click.command()
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option(
    "--steps",
    "step_modules",
    multiple=True,
    help="A module defining step packages whose types FILE may use (repeatable).",
)
@click.option("--from-template", "template_id", help="Register the template ID as a workflow.")
@click.option("--template-version", type=int, default=0, help="With --from-template (0: latest).")
@click.option("--param", "params", multiple=True, help="With --from-template: NAME=VALUE.")
@click.option("--id", "workflow_id", help="With --from-template: the workflow's id.")
@output_option
def register(
    file: Path | None,
    step_modules: tuple[str, ...],
    template_id: str | None,
    template_version: int,
    params: tuple[str, ...],
    workflow_id: str | None,
    output: str,
) -> None:
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
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topics import TopicNames, declare_topics
    from stepstream.workflows.definition import with_type_defaults
    from stepstream.workflows.validation import check_queue_steps

    settings = load_settings()
    if file is not None and template_id is not None:
        raise invalid("give a FILE or --from-template, not both")
    if file is None and template_id is None:
        raise invalid("give a definition FILE, or --from-template ID")
    if file is not None and is_template(raw := read_raw(file)):
        register_template(file, raw, output)
        return
    packages = load_packages(step_modules)
    packaged = {step_type for package in packages for step_type in package.handlers}
    names = TopicNames.for_prefix(settings.topic_prefix)
    served = Served.by(run(read_announcements(kafka_access(settings), names.workers)))
    known = {*default_registry(), *MAINTENANCE_STEP_TYPES, *packaged, *served.step_types}
    if template_id is not None:
        definition = from_template(template_id, template_version, params, workflow_id, known)
    else:
        definition = read_definition(file, known)
    problems, warnings = check_queue_steps(definition, served.queue_types)
    problems += run(call_cycle_problems(settings, definition))
    if problems:
        raise invalid_definition(file, problems)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    defaults = {t: d for package in packages for t, d in package.defaults.items()}
    definition = with_type_defaults(definition, defaults)

    async def publish() -> bool:
        await declare_topics(
            kafka_access(settings),
            settings,
            queues={step.queue for step in definition.steps if step.queue is not None},
        )
        fresh = await register_definition(kafka_access(settings), names.definitions, definition)
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


async def call_cycle_problems(settings: Any, definition: WorkflowDefinition) -> list[Any]:
    """A sub-workflow step whose static calls, through registered workflows, come back
    to this one: refused with the path (a call made only at run time is stopped by
    WORKFLOW_MAX_NESTING_DEPTH)."""
    from stepstream.streams.definitions import DefinitionCatalog
    from stepstream.streams.kafka_access import kafka_access
    from stepstream.streams.topics import TopicNames
    from stepstream.workflows import Problem
    from stepstream.workflows.children import call_cycle

    calls = {s.id: s.child for s in definition.steps if s.child is not None}
    if not calls:
        return []
    names = TopicNames.for_prefix(settings.topic_prefix)
    catalog = DefinitionCatalog(kafka_access(settings), names.definitions)
    await catalog.start()
    try:
        await catalog.caught_up()
        problems = []
        for index, step in enumerate(definition.steps):
            if step.child is None:
                continue
            path = call_cycle(definition.id, {step.id: step.child}, catalog.get)
            if path is not None:
                where = f"steps[{index}] ({step.id}).workflow.id"
                problems.append(Problem(where, f"a call cycle: {' -> '.join(path)}"))
        return problems
    finally:
        await catalog.stop()


def is_template(raw: Any) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == "template"


def register_template(file: Path, raw: dict[str, Any], output: str) -> None:
    """Check a template and keep it in PostgreSQL, for workflows that use it."""
    import asyncpg

    from stepstream.infra.template_store import TemplateConflict, save_template
    from stepstream.workflows import InvalidDefinition

    async def save() -> bool:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await save_template(connection, raw)
        finally:
            await connection.close()

    try:
        fresh = run(save())
    except InvalidDefinition as problems:
        raise invalid_definition(file, problems.problems) from None
    except TemplateConflict as conflict:
        raise invalid(str(conflict)) from None
    state = "registered" if fresh else "already registered"
    if output == "json":
        print_json({"status": state, "template": raw["id"], "version": raw.get("version", 1)})
    else:
        click.echo(f"{state}: template {raw['id']} version {raw.get('version', 1)}")


def from_template(
    template_id: str,
    version: int,
    params: tuple[str, ...],
    workflow_id: str | None,
    step_types: set[str],
) -> WorkflowDefinition:
    """`register --from-template`: the template as a workflow of its own."""
    import json

    from stepstream.workflows import InvalidDefinition, build_definition
    from stepstream.workflows.templates import workflow_from

    values: dict[str, Any] = {}
    for param in params:
        name, equals, text = param.partition("=")
        if not equals:
            raise invalid(f"--param {param!r}: write NAME=VALUE")
        try:
            values[name] = json.loads(text)  # 3 is a number, true a boolean
        except ValueError:
            values[name] = text
    template = run(_templates({template_id})).get((template_id, version))
    if template is None:
        raise invalid(f"template {template_id!r} version {version or 'latest'} is not registered")
    try:
        raw = workflow_from(template, values, workflow_id or template.id)
        return build_definition(raw, step_types)
    except InvalidDefinition as problems:
        raise invalid_definition(None, problems.problems) from None


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
