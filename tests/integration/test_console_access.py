"""Who may see and do what in the console, over HTTP against a real worker and console.

Every route is walked as an operator of another tenant: each answers 404 (as for an id
that does not exist) or lists nothing of the first tenant's, and no action reaches the
replay topic. Sessions: CSRF on every form, sign-out, the idle timeout, a disabled user,
throttled sign-ins."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import aiohttp
import asyncpg
import pytest

from stepstream.console.server import Console
from stepstream.infra.operators import Role, set_disabled
from stepstream.streams.settings import Settings
from tests.integration.console_helpers import (
    PASSWORD,
    User,
    Visitor,
    add_users,
    console_process,
    recorded,
    start,
)
from tests.integration.workers import (
    FAILS_ONCE,
    definition,
    engine_env,
    prepare,
    read_topic,
    running_worker,
)

ASK = definition(
    {
        "id": "access-ask",
        "steps": [
            {"id": "ask", "human": {"title": "Confirm the visit", "form": {"type": "object"}}},
        ],
    }
)
SECRET_VALUE = "11 Acacia Avenue"  # tenant A's business value: must not show to tenant B


class Walk:
    def __init__(self, run_token: str) -> None:
        self.tenant_a, self.tenant_b = f"{run_token}-walk-a", f"{run_token}-walk-b"
        self.owner = User(f"ann-{run_token}", Role.OPERATOR, (self.tenant_a,))
        self.viewer = User(f"val-{run_token}", Role.VIEWER, (self.tenant_a,))
        self.stranger = User(f"sam-{run_token}", Role.OPERATOR, (self.tenant_b,))
        self.failed = f"{run_token}-walk-failed"  # tenant A's
        self.asking = f"{run_token}-walk-asking"  # tenant A's, with an open task


@pytest.fixture(scope="module")
def walk(
    settings: Settings, run_token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, str, Walk]]:
    env = engine_env(settings, f"test-{run_token}-access")
    engine = Settings.from_env(env)
    asyncio.run(prepare(engine, FAILS_ONCE, ASK))
    plan = Walk(run_token)
    add_users(engine, [plan.owner, plan.viewer, plan.stranger])
    workdir = tmp_path_factory.mktemp("access")
    with (
        running_worker(engine, env, "access-w1", workdir),
        console_process(env, workdir / "console.log") as base,
    ):
        start(engine, "fails-once", plan.failed, plan.tenant_a, address=SECRET_VALUE)
        start(engine, "access-ask", plan.asking, plan.tenant_a, address=SECRET_VALUE)
        recorded(engine, plan.failed, "failed")
        recorded(engine, plan.asking)
        yield engine, base, plan


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def routes() -> set[tuple[str, str]]:
    """Every route the console serves, as its router lists them."""
    app = Console(Settings()).application()
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if route.method != "HEAD":
            found.add((route.method, path))
    return found


async def requests_for(settings: Settings, execution_ids: set[str]) -> list[str]:
    """What operators sent for these executions: replay requests (retry, rerun, resume,
    cancel) on the replay topic, answers to tasks on the executions topic."""
    found = []
    for topic in ("replay", "executions"):
        for event in await read_topic(settings, f"{settings.topic_prefix}.{topic}"):
            requested = event.name in ("ReplayRequested", "TaskAnswered")
            if requested and event.record.get("execution_id") in execution_ids:
                found.append(event.name)
    return found


async def test_every_route_as_another_tenants_operator_shows_and_does_nothing(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession
) -> None:
    settings, base, plan = walk
    ids = {plan.failed, plan.asking}
    visitor = Visitor(base, http)
    assert await visitor.sign_in(plan.stranger.name) == 303
    # What each route must answer another tenant's operator: (method, path) -> answer.
    expected: dict[tuple[str, str], tuple[str, int]] = {
        ("GET", "/"): ("/", 302),
        ("GET", "/executions"): ("/executions", 200),
        ("GET", "/executions/{id}"): (f"/executions/{plan.failed}", 404),
        ("GET", "/executions/{id}/events"): (f"/executions/{plan.failed}/events", 404),
        ("POST", "/executions/{id}/actions"): (f"/executions/{plan.failed}/actions", 404),
        ("POST", "/actions/bulk-retry"): ("/actions/bulk-retry", 303),
        ("GET", "/tasks"): ("/tasks", 200),
        ("GET", "/tasks/{id}/{step}"): (f"/tasks/{plan.asking}/ask", 404),
        ("POST", "/tasks/{id}/{step}/answer"): (f"/tasks/{plan.asking}/ask/answer", 404),
        ("GET", "/dead-letters"): ("/dead-letters", 200),
        ("POST", "/actions/redrive"): ("/actions/redrive", 303),
        ("GET", "/figures"): ("/figures", 404),
        ("GET", "/users"): ("/users", 403),  # admins only
        ("GET", "/analytics"): ("/analytics", 200),
        ("GET", "/analytics/{workflow}"): ("/analytics/fails-once?since=24h", 200),
        ("GET", "/sign-in"): ("/sign-in", 200),
        ("POST", "/sign-in"): ("/sign-in", 401),
        ("POST", "/sign-out"): ("/sign-out", 303),
        ("GET", "/static"): ("/static/console.css", 200),
    }
    assert routes() == set(expected), "a route was added: say here what it must answer"
    form = {"action": "retry", "status": "failed", "workflow": "fails-once"}
    last_sign_out = sorted(expected.items(), key=lambda x: x[0][1] == "/sign-out")
    for (method, _), (path, status) in last_sign_out:
        got, page = await (visitor.get(path) if method == "GET" else visitor.post(path, **form))
        assert got == status, f"{method} {path}: {got}"
        named = next((i for i in ids if i in path), None)
        if got == 404 and named:  # the very answer an id that does not exist gets
            absent = path.replace(named, "no-such-execution")
            _, unknown = await (
                visitor.get(absent) if method == "GET" else visitor.post(absent, **form)
            )
            assert page.replace(named, "no-such-execution") == unknown, path
            page = page.replace(named, "")
        for leak in (plan.failed, plan.asking, plan.tenant_a, SECRET_VALUE):
            assert leak not in page, f"{method} {path} shows {leak}"
    # Tenant B ran nothing: its analytics count none of tenant A's executions.
    await visitor.sign_in(plan.stranger.name)
    assert "no executions in this range" in (await visitor.get("/analytics"))[1]
    _, figures = await visitor.get("/analytics/fails-once?since=24h")
    assert 'data-version="' not in figures and 'data-step="' not in figures
    assert await requests_for(settings, ids) == []  # nothing reached the replay topic


async def test_a_viewer_is_refused_every_action_and_nothing_is_sent(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession
) -> None:
    settings, base, plan = walk
    viewer = Visitor(base, http)
    await viewer.sign_in(plan.viewer.name)
    status, page = await viewer.get(f"/executions/{plan.failed}")
    assert status == 200 and SECRET_VALUE in page  # the viewer's own tenant
    assert 'class="actions"' not in page
    for path in (
        f"/executions/{plan.failed}/actions",
        "/actions/bulk-retry",
        f"/tasks/{plan.asking}/ask/answer",
        "/actions/redrive",
    ):
        status, page = await viewer.post(path, action="retry", answer_json="{}")
        assert status == 403 and f"{plan.viewer.name} is not operator" in page, path
    assert await requests_for(settings, {plan.failed, plan.asking}) == []


async def test_an_action_needs_the_sessions_own_csrf_token(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession
) -> None:
    settings, base, plan = walk
    owner, other = Visitor(base, http), Visitor(base, http)
    await owner.sign_in(plan.owner.name)
    await other.sign_in(plan.owner.name)  # the same user, another session
    path = f"/executions/{plan.failed}/actions"
    assert (await owner.post(path, csrf=False, action="retry"))[0] == 403
    owner.csrf, mine = other.csrf, owner.csrf
    assert (await owner.post(path, action="retry"))[0] == 403
    assert await requests_for(settings, {plan.failed}) == []
    owner.csrf = mine
    status, _ = await owner.post(path, action="retry", reason="csrf test")
    assert status == 303
    events = await read_topic(
        settings,
        f"{settings.topic_prefix}.replay",
        until=lambda e: any(x.record.get("execution_id") == plan.failed for x in e),
    )
    sent = [e.record for e in events if e.record.get("execution_id") == plan.failed]
    assert [r["requested_by"] for r in sent] == [plan.owner.name]  # the signed-in user


async def set_seen(settings: Settings, name: str, ago: timedelta) -> None:
    connection = await asyncpg.connect(settings.database_url)
    try:
        await connection.execute(
            "UPDATE console_sessions SET seen_at = now() - $2::interval WHERE user_name = $1",
            name,
            ago,
        )
    finally:
        await connection.close()


async def test_sessions_end_on_sign_out_when_idle_and_when_the_user_is_disabled(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession, run_token: str
) -> None:
    settings, base, plan = walk
    brief = User(f"bea-{run_token}", Role.VIEWER, (plan.tenant_a,))
    await asyncio.to_thread(add_users, settings, [brief])
    visitor = Visitor(base, http)
    await visitor.sign_in(brief.name)
    assert (await visitor.get("/executions"))[0] == 200
    await set_seen(settings, brief.name, timedelta(minutes=31))  # past the 30 minutes' idle timeout
    status, _ = await visitor.get("/executions")
    assert status == 303  # to the sign-in page
    await visitor.sign_in(brief.name)
    assert (await visitor.get("/executions"))[0] == 200
    connection = await asyncpg.connect(settings.database_url)
    try:
        await set_disabled(connection, brief.name, True)
    finally:
        await connection.close()
    assert (await visitor.get("/executions"))[0] == 303
    assert await visitor.sign_in(brief.name) == 401  # and cannot sign in again
    keeper = Visitor(base, http)
    await keeper.sign_in(plan.viewer.name)
    assert (await keeper.post("/sign-out"))[0] == 303
    assert (await keeper.get("/executions"))[0] == 303


async def test_failed_sign_ins_are_throttled_whatever_the_password(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession, run_token: str
) -> None:
    settings, base, _ = walk
    target = User(f"tom-{run_token}", Role.VIEWER, None)
    await asyncio.to_thread(add_users, settings, [target])
    visitor = Visitor(base, http)
    answers = [await visitor.sign_in(target.name, "not-the-password") for _ in range(5)]
    assert answers == [401] * 5
    assert await visitor.sign_in(target.name, PASSWORD) == 429  # right, but too late


async def test_the_session_cookie_is_http_only_same_site_and_secure(
    walk: tuple[Settings, str, Walk], http: aiohttp.ClientSession
) -> None:
    _, base, plan = walk
    async with http.post(
        f"{base}/sign-in",
        data={"name": plan.viewer.name, "password": PASSWORD},
        allow_redirects=False,
    ) as answer:
        header = answer.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Secure" in header


def test_users_are_managed_from_the_command_line(
    walk: tuple[Settings, str, Walk], run_token: str
) -> None:
    settings, _, plan = walk
    env = {**os.environ, **settings.as_environment()}
    name = f"cli-{run_token}"

    def users(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stepstream", "users", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = users(
        "add",
        name,
        "--role",
        "viewer",
        "--tenant",
        plan.tenant_a,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added {name}: viewer of {plan.tenant_a}"
    short = users(
        "add", f"{name}-2", "--role", "viewer", "--all-tenants", "--password-stdin", stdin="short\n"
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    both = users(
        "add",
        f"{name}-3",
        "--role",
        "viewer",
        "--all-tenants",
        "--tenant",
        "x",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert both.returncode == 2 and "not both" in both.stderr
    granted = users("grant", name, "--role", "operator", "--all-tenants")
    assert granted.stdout.strip() == f"{name}: operator of every tenant"
    assert users("disable", name).returncode == 0
    listed = json.loads(users("list", "-o", "json").stdout)
    mine = [u for u in listed if u["name"] == name]
    assert mine == [{"name": name, "role": "operator", "tenants": None, "disabled": True}]
    assert users("disable", f"nobody-{run_token}").returncode == 2
