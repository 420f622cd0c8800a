"""`stepstream users`: the console's users (add, list, disable, enable, grant). They are
rows in PostgreSQL; the command runs where DATABASE_URL reaches it, so it is trusted."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import click

from stepstream.cli.errors import invalid
from stepstream.cli.support import load_settings, output_option, print_json, run
from stepstream.infra.operators import (
    Operator,
    Role,
    UserError,
    add_user,
    grant,
    list_users,
    set_disabled,
)

T = TypeVar("T")
ROLES = click.Choice([str(role) for role in Role])


def _with_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def go() -> T:
        connection = await asyncpg.connect(load_settings().database_url)
        try:
            return await work(connection)
        except UserError as error:
            raise invalid(str(error)) from None
        finally:
            await connection.close()

    return run(go())


def _tenants(tenant: tuple[str, ...], every_tenant: bool) -> list[str] | None:
    if bool(tenant) == every_tenant:
        raise invalid("give --tenant (one or more) or --all-tenants, not both")
    return None if every_tenant else list(tenant)


def _shown(user: Operator) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": str(user.role),
        "tenants": None if user.tenants is None else list(user.tenants),
        "disabled": user.disabled,
    }


@click.group()
def users() -> None:
    """The console's users: each has a role (viewer reads; operator also retries,
    reruns, resumes, cancels, answers tasks and re-drives; admin also manages users and
    definitions) and sees the tenants given, or all of them."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=ROLES, required=True)
@click.option("--tenant", multiple=True, help="A tenant the user sees (repeat for more).")
@click.option("--all-tenants", "every_tenant", is_flag=True, help="The user sees every tenant.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (for scripts); otherwise it is asked for.",
)
def add(
    name: str, role: str, tenant: tuple[str, ...], every_tenant: bool, password_stdin: bool
) -> None:
    """Add user NAME. The password (12 characters or more) is stored as an Argon2id hash."""
    tenants = _tenants(tenant, every_tenant)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    added = _with_database(lambda c: add_user(c, name, password, Role.named(role), tenants))
    click.echo(f"added {added.name}: {added.role} of {added.scope}")


@users.command("list")
@output_option
def list_command(output: str) -> None:
    """Every user, with role, tenants and whether disabled."""
    found = _with_database(list_users)
    if output == "json":
        print_json([_shown(user) for user in found])
        return
    for user in found:
        state = " (disabled)" if user.disabled else ""
        click.echo(f"{user.name}: {user.role} of {user.scope}{state}")
    if not found:
        click.echo("no users: add one with `stepstream users add NAME --role admin`")


@users.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Disable user NAME: their sessions end now, and they cannot sign in."""
    _with_database(lambda c: set_disabled(c, name, True))
    click.echo(f"disabled {name}; their sessions have ended")


@users.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Let a disabled user NAME sign in again."""
    _with_database(lambda c: set_disabled(c, name, False))
    click.echo(f"enabled {name}")


@users.command("grant")
@click.argument("name")
@click.option("--role", type=ROLES, default=None, help="The user's new role.")
@click.option("--tenant", multiple=True, help="The tenants the user sees from now on.")
@click.option("--all-tenants", "every_tenant", is_flag=True, help="The user sees every tenant.")
def grant_command(name: str, role: str | None, tenant: tuple[str, ...], every_tenant: bool) -> None:
    """Change user NAME's role, or the tenants they see (replacing the list)."""
    if role is None and not tenant and not every_tenant:
        raise invalid("give --role, --tenant or --all-tenants")
    tenants = _tenants(tenant, every_tenant) if tenant or every_tenant else None
    new_role = None if role is None else Role.named(role)
    changed = _with_database(lambda c: grant(c, name, new_role, tenants, every_tenant))
    click.echo(f"{changed.name}: {changed.role} of {changed.scope}")
