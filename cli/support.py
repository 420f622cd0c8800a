"""What the command-line modules share: settings, `-o json`, and running a coroutine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from stepstream.streams.settings import Settings, SettingsError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def load_settings() -> Settings:
    """The settings from the environment; a bad value is a usage error naming its variable."""
    try:
        return Settings.from_env()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def output_option(command: F) -> F:
    """`-o text|json`: json prints one JSON document on stdout, for scripts."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Output format.",
    )(command)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def run(coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run to completion; with `timeout`, the whole command (connecting included) is
    bounded: TimeoutError, exit 124, once it passes."""

    async def bounded() -> T:
        try:
            async with asyncio.timeout(timeout):
                return await coroutine
        except TimeoutError as error:
            raise TimeoutError(str(error) or f"no answer within --timeout {timeout:g}s") from None

    return asyncio.run(bounded())
