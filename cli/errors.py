"""Expected failures as one line and a documented exit code, never a traceback.

A failure reaching a service is recognised by the library it came from (its exception
type, or for a bare OSError the innermost client-library frame of its traceback), and
named with the address tried (passwords redacted) and the variable that sets it.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from stepstream.steps.packages import StepPackageError
from stepstream.streams.reaching import KafkaUnavailable
from stepstream.streams.settings import Settings, SettingsError
from stepstream.streams.topics import TopicsMissing


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the workflow failed or was rejected
    INVALID = 2  # invalid input: usage, a definition, an unknown workflow or execution
    UNAVAILABLE = 3  # a service (Kafka, PostgreSQL, Redis) cannot be used
    TIMEOUT = 124  # --timeout passed (the code `timeout(1)` uses)


class CommandFailed(click.ClickException):
    """An expected failure with its exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file: Any = None) -> None:
        click.echo(f"stepstream: {self.format_message()}", err=True)


def invalid(message: str) -> CommandFailed:
    return CommandFailed(message, ExitCode.INVALID)


@dataclass(frozen=True)
class Service:
    name: str
    setting: str
    variable: str


SERVICES = {
    "aiokafka": Service("Kafka", "kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    "kafka": Service("Kafka", "kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    "asyncpg": Service("PostgreSQL", "database_url", "DATABASE_URL"),
    "redis": Service("Redis", "redis_url", "REDIS_URL"),
}
_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]+@")


def redact(text: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    return _PASSWORD.sub(r"\1***@", text)


def _address(url: str) -> str:
    parts = urlsplit(url)
    if "://" not in url or parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def failing_service(error: BaseException) -> Service | None:
    module = type(error).__module__.split(".")[0]
    if module in SERVICES:
        return SERVICES[module]
    if isinstance(error, OSError):  # e.g. ConnectionRefusedError raised inside a client
        for frame in reversed(traceback.extract_tb(error.__traceback__)):
            for library, service in SERVICES.items():
                if f"/{library}/" in frame.filename:
                    return service
    return None


def explain(error: BaseException) -> CommandFailed | None:
    """The one-line failure for an expected error; None for a bug."""
    if isinstance(error, TopicsMissing):
        return CommandFailed(str(error), ExitCode.UNAVAILABLE)
    if isinstance(error, KafkaUnavailable):
        hint = "" if error.cause_is_access else " (is it running? KAFKA_BOOTSTRAP_SERVERS sets it)"
        return CommandFailed(f"{error}{hint}", ExitCode.UNAVAILABLE)
    if isinstance(error, StepPackageError):
        return CommandFailed(str(error), ExitCode.INVALID)
    service = failing_service(error)
    if service is not None:
        try:
            address = _address(str(getattr(Settings.from_env(), service.setting)))
        except SettingsError:
            address = "(invalid settings)"
        detail = redact(str(error) or type(error).__name__).splitlines()[0][:300]
        detail = detail.removeprefix(f"{type(error).__name__}: ")  # aiokafka repeats it
        return CommandFailed(
            f"cannot use {service.name} at {address}: {type(error).__name__}: {detail}"
            f" (is it running? {service.variable} sets the address)",
            ExitCode.UNAVAILABLE,
        )
    if isinstance(error, TimeoutError):
        return CommandFailed(f"timed out: {error}" if str(error) else "timed out", ExitCode.TIMEOUT)
    return None


class Commands(click.Group):
    """The `stepstream` group: every command's expected failures become one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:
            failure = explain(error)
            if failure is None:
                raise
            raise failure from None
