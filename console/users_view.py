"""The console's users page, for admins: who may sign in, their roles and tenants. An admin
sees the users whose tenants are all among theirs (an admin of every tenant sees every
user). Users are changed with `stepstream users`, where the database is reachable."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

import asyncpg
from aiohttp import web

from stepstream.console import pages
from stepstream.console.access import needs, operator, who
from stepstream.infra.operators import Operator, Role, list_users


def within(admin: Operator, user: Operator) -> bool:
    """Whether every tenant the user sees is one the admin sees."""
    if admin.tenants is None:
        return True
    return user.tenants is not None and set(user.tenants) <= set(admin.tenants)


def install(app: web.Application, pool: Callable[[], asyncpg.Pool]) -> None:
    async def users(request: web.Request) -> web.Response:
        admin = operator(request)
        async with pool().acquire() as connection:
            found = [u for u in await list_users(connection) if within(admin, u)]
        rows = "".join(
            f'<tr data-user="{escape(u.name)}"><td>{escape(u.name)}</td><td>{u.role}</td>'
            f"<td>{escape(u.scope)}</td><td>{'disabled' if u.disabled else ''}</td></tr>"
            for u in found
        )
        body = (
            "<p>Add, change and disable users with <code>stepstream users</code>.</p>"
            '<table class="users"><thead><tr><th>user</th><th>role</th><th>tenants</th>'
            f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
        html = pages.layout("users", body, who=who(request))
        return web.Response(text=html, content_type="text/html")

    app.router.add_get("/users", needs(Role.ADMIN)(users))
