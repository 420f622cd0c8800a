"""The `stepstream` command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import click

from streams.settings import Settings, SettingsError

SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


@click.group()
def main() -> None:
    """stepstream: DAG workflows as event streams on Apache Kafka."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("action", type=click.Choice(["up", "down", "status", "env"]))
def services(action: str) -> None:
    """Start, stop or inspect the local Kafka, PostgreSQL and Redis."""
    if not SERVICES_SCRIPT.is_file():
        raise click.ClickException(f"{SERVICES_SCRIPT} is missing: run from a source checkout")
    env = {**os.environ, "PYTHON": sys.executable}
    completed = subprocess.run(["bash", str(SERVICES_SCRIPT), action], env=env, check=False)  # noqa: S603, S607
    sys.exit(completed.returncode)


@main.command()
def smoke() -> None:
    """Round-trip data through Kafka, PostgreSQL and Redis and say what happened."""
    from streams.smoke import run_smoke

    for line in asyncio.run(run_smoke(load_settings())):
        click.echo(line)


@main.command()
def run() -> None:
    """The main job. Until the event pipeline lands, it is the services smoke job."""
    from streams.smoke import run_smoke

    click.echo("stepstream run: smoke job (round-trips data through each service)")
    for line in asyncio.run(run_smoke(load_settings())):
        click.echo(line)


@main.command("plan")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format", "output_format", type=click.Choice(["text", "mermaid", "dot"]), default="text"
)
def plan_command(file: Path, output_format: str) -> None:
    """Validate a definition FILE and print its execution plan (exit 2 if invalid)."""
    from workflows import (
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
