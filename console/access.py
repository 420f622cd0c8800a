"""Who may see and do what in the console: sign-in, sessions and their checks.

Every request but the sign-in page and the stylesheet needs a live session (an HttpOnly,
SameSite=Strict cookie whose value is stored only hashed). Every form sent carries the
session's CSRF token. A route's handler states the role it needs (`needs`); the tenants
a user sees are enforced by the handlers' queries, through `request["operator"]`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from urllib.parse import urlencode, urlsplit

import asyncpg
from aiohttp import web

from stepstream.console import pages
from stepstream.infra.operators import (
    Operator,
    Role,
    Session,
    SignInPolicy,
    Throttled,
    find_session,
    sign_in,
    sign_out,
)
from stepstream.streams.settings import Settings

COOKIE = "stepstream_session"
OPEN_PATHS = ("/sign-in", "/static/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Who:
    """The signed-in user as the pages show them, with the token their forms carry."""

    name: str
    role: Role
    scope: str
    csrf: str
    every_tenant: bool

    @property
    def may_act(self) -> bool:
        return self.role >= Role.OPERATOR

    @classmethod
    def of(cls, session: Session) -> Who:
        o = session.operator
        return cls(o.name, o.role, o.scope, session.csrf_token, o.tenants is None)


def operator(request: web.Request) -> Operator:
    found: Operator = request["operator"]
    return found


def who(request: web.Request) -> Who:
    found: Who = request["who"]
    return found


def needs(role: Role) -> Callable[[Handler], Handler]:
    """A handler only users of `role` or above may reach; others are refused, and
    nothing of the handler runs."""

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if not operator(request).may(role):
                raise refused(f"refused: {operator(request).name} is not {role}")
            return await handler(request)

        checked.__name__ = handler.__name__
        return checked

    return wrap


def refused(reason: str) -> web.HTTPForbidden:
    html = pages.layout("refused", f'<p class="refused">{escape(reason)}</p>')
    return web.HTTPForbidden(text=html, content_type="text/html")


class Gate:
    """The console's sign-in, sign-out and the middleware that checks every request."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], policy: SignInPolicy, secure: bool):
        self.pool = pool
        self.policy = policy
        self.secure = secure  # Secure cookies: sent over HTTPS only (and to localhost)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.router.add_get("/sign-in", self.sign_in_page)
        app.router.add_post("/sign-in", self.sign_in)
        app.router.add_post("/sign-out", self.sign_out)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/sign-in" or request.path.startswith("/static/"):
            return await handler(request)
        token = request.cookies.get(COOKIE, "")
        session = None
        if token:
            async with self.pool().acquire() as connection:
                session = await find_session(connection, token, self.policy)
        if session is None:
            if request.method == "GET" and "text/event-stream" not in request.headers.get(
                "Accept", ""
            ):
                raise web.HTTPSeeOther(f"/sign-in?{urlencode({'next': request.path_qs})}")
            raise web.HTTPUnauthorized(text="sign in first")
        if request.method == "POST":
            form = await request.post()
            if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf_token):
                raise refused("refused: the form is not this session's (reload the page)")
        request["operator"], request["who"] = session.operator, Who.of(session)
        return await handler(request)

    async def sign_in_page(self, request: web.Request) -> web.Response:
        return sign_in_response(request.query.get("next", "/executions"))

    async def sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        target = safe_target(str(form.get("next", "")))
        try:
            async with self.pool().acquire() as connection:
                session = await sign_in(
                    connection, name, password, request.remote or "", self.policy
                )
        except Throttled as throttled:
            return sign_in_response(target, str(throttled), status=429)
        if session is None:
            return sign_in_response(target, "wrong name or password", status=401)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            secure=self.secure,
            path="/",
        )
        raise response

    async def sign_out(self, request: web.Request) -> web.Response:
        async with self.pool().acquire() as connection:
            await sign_out(connection, request.cookies.get(COOKIE, ""))
        response = web.HTTPSeeOther("/sign-in")
        response.del_cookie(COOKIE, path="/")
        raise response


def safe_target(target: str) -> str:
    """Only a path of this console: a sign-in link cannot send anyone elsewhere."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/executions"
    return target


def sign_in_response(target: str, message: str = "", status: int = 200) -> web.Response:
    body = (
        '<form class="sign-in" method="post" action="/sign-in">'
        f'<input type="hidden" name="next" value="{escape(safe_target(target))}">'
        '<label>name <input name="name" autocomplete="username" required></label>'
        '<label>password <input name="password" type="password"'
        ' autocomplete="current-password" required></label>'
        '<button type="submit">sign in</button></form>'
    )
    html = pages.layout("sign in", body, message)
    return web.Response(text=html, content_type="text/html", status=status)


def not_found(what: str) -> web.HTTPNotFound:
    """The answer for a record that does not exist and for one of a tenant the user
    does not see, alike: ids of other tenants cannot be probed."""
    return web.HTTPNotFound(text=f"no {what} is recorded")


def tenants_of(operator: Operator) -> list[str] | None:
    return None if operator.tenants is None else list(operator.tenants)


def policy_of(settings: Settings) -> SignInPolicy:
    return SignInPolicy(idle_timeout=timedelta(seconds=settings.console_session_idle_seconds))
