"""The operator console: an aiohttp application over the same sources as the command
line (PostgreSQL for executions, checkpoints for why steps wait, the topics for live
events, the workers' metrics for the figures). Users sign in (`console.access`); what
they see is cut to their tenants here, in every query, and what they may do to their
role. Actions go through the replay topic, naming the signed-in user as who asked,
which the persister records."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from stepstream.client import AnswerRefused, ReplayRefused, WorkflowClient
from stepstream.client.dead_letters import Letter, read_letters, redrive
from stepstream.client.figures import add_up, scrape, seed_figures
from stepstream.client.watch import ExecutionWatcher, read_checkpoint, step_status
from stepstream.console import analytics_view, pages, task_pages, users_view
from stepstream.console.access import Gate, needs, not_found, operator, policy_of, tenants_of, who
from stepstream.infra.executions import ExecutionRecord, describe_execution, list_executions
from stepstream.infra.human_tasks import HumanTaskRecord, find_task, open_tasks
from stepstream.infra.operators import Operator, Role
from stepstream.streams.announcements import read_announcements
from stepstream.streams.events import now_ms
from stepstream.streams.kafka_access import kafka_access
from stepstream.streams.settings import Settings
from stepstream.streams.topics import TopicNames
from stepstream.workflows import ReplayAction, WorkflowDefinition, build_definition
from stepstream.workflows import state_from_dict as read_state
from stepstream.workflows.explain import explain

STATIC = Path(__file__).resolve().parent / "static"
BULK_PER_SECOND = 20  # a bulk retry is paced: it cannot flood the workers
BULK_LIMIT = 1000
FILTERS = ("workflow", "status", "tenant", "since", "until", "input")


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._client: WorkflowClient | None = None  # made in the server's loop, at startup
        self.resources = contextlib.AsyncExitStack()

    @property
    def client(self) -> WorkflowClient:
        assert self._client is not None, "the console has not started"
        return self._client

    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the console has not started"
        return self._pool

    async def start(self, app: web.Application) -> None:
        self._pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=4)
        client = WorkflowClient(self.settings, follow_outcomes=False)
        self._client = await self.resources.enter_async_context(client)

    async def stop(self, app: web.Application) -> None:
        await self.resources.aclose()
        if self._pool is not None:
            await self._pool.close()

    def application(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        secure = self.settings.console_secure_cookies
        Gate(self.pool, policy_of(self.settings), secure).install(app)
        viewer, acting = needs(Role.VIEWER), needs(Role.OPERATOR)
        app.router.add_get("/", self.home)
        app.router.add_get("/executions", viewer(self.executions))
        app.router.add_get("/executions/{id}", viewer(self.execution))
        app.router.add_get("/executions/{id}/events", viewer(self.events))
        app.router.add_post("/executions/{id}/actions", acting(self.act))
        app.router.add_post("/actions/bulk-retry", acting(self.bulk_retry))
        app.router.add_get("/tasks", viewer(self.tasks))
        app.router.add_get("/tasks/{id}/{step}", viewer(self.task))
        app.router.add_post("/tasks/{id}/{step}/answer", acting(self.answer))
        app.router.add_get("/dead-letters", viewer(self.dead_letters))
        app.router.add_post("/actions/redrive", acting(self.redrive))
        app.router.add_get("/figures", viewer(self.figures))
        analytics_view.install(app, self.pool)
        users_view.install(app, self.pool)
        app.router.add_static("/static", STATIC)
        return app

    # Pages --------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/executions")

    async def executions(self, request: web.Request) -> web.Response:
        filters = {name: request.query.get(name, "").strip() for name in FILTERS}
        async with self.pool().acquire() as connection:
            page = await list_executions(
                connection,
                **query_of(filters),
                after=request.query.get("after"),
                tenant_ids=tenants_of(operator(request)),
            )
        message = request.query.get("message", "")
        html = pages.executions_page(filters, page, who(request), message)
        return web.Response(text=html, content_type="text/html")

    async def seen_execution(self, request: web.Request) -> ExecutionRecord:
        """The execution of the request's path, if the user sees its tenant; 404 if
        not, as for one that does not exist."""
        execution_id = request.match_info["id"]
        async with self.pool().acquire() as connection:
            record = await describe_execution(connection, execution_id)
        if record is None or not operator(request).sees(record.tenant_id):
            raise not_found(f"execution {execution_id}")
        return record

    async def execution(self, request: web.Request) -> web.Response:
        record = await self.seen_execution(request)
        async with self.pool().acquire() as connection:
            body = await connection.fetchval(
                "SELECT body FROM workflow_definitions WHERE id = $1 AND version = $2",
                record.workflow_id,
                record.workflow_version,
            )
        definition: WorkflowDefinition | None = build_definition(json.loads(body)) if body else None
        states, reasons, fans = await self.states_of(record.execution_id)
        html = pages.execution_page(
            record,
            definition,
            states,
            reasons,
            who(request),
            request.query.get("message", ""),
            fans,
        )
        return web.Response(text=html, content_type="text/html")

    async def states_of(
        self, execution_id: str
    ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """Each step's state, why those not running are not, and how far each fan-out
        is ("37 of 120 items done"): from the checkpoint."""
        stored = await read_checkpoint(self.settings, execution_id)
        if stored is None:
            return {}, {}, {}
        state = read_state(stored["state"])
        states = {step_id: str(step.status) for step_id, step in state.steps.items()}
        fans = {}
        for step_id in state.definition.fan_outs:
            fan = state.steps[step_id].fan
            if fan is not None:
                fans[step_id] = fan.progress()
        return states, explain(state, now_ms()), fans

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every step's state now, then each change until the end."""
        execution_id = (await self.seen_execution(request)).execution_id
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(data: dict[str, str]) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        async with ExecutionWatcher(self.settings, execution_id) as watcher:
            states, _, _ = await self.states_of(execution_id)
            for step_id, state in states.items():
                await send({"step": step_id, "state": state})
            outcome = None  # sent last: the page stops listening when it has the outcome
            async for event in watcher.events():
                step_state = step_status(event)
                if step_state is not None:
                    await send({"step": event.record["step_id"], "state": step_state})
                elif event.name.startswith("Workflow"):
                    outcome = event.name.removeprefix("Workflow").lower()
            if outcome is not None:
                await send({"outcome": outcome})
        return response

    async def tasks(self, request: web.Request) -> web.Response:
        filters = {name: request.query.get(name, "").strip() for name in ("tenant", "assignee")}
        async with self.pool().acquire() as connection:
            found = await open_tasks(
                connection,
                filters["tenant"] or None,
                filters["assignee"] or None,
                tenant_ids=tenants_of(operator(request)),
            )
        message = request.query.get("message", "")
        html = task_pages.tasks_page(filters, found, who(request), message)
        return web.Response(text=html, content_type="text/html")

    async def seen_task(self, request: web.Request) -> HumanTaskRecord:
        execution_id, step_id = request.match_info["id"], request.match_info["step"]
        async with self.pool().acquire() as connection:
            found = await find_task(connection, execution_id, step_id)
        if found is None or not operator(request).sees(found.tenant_id):
            raise not_found(f"task {execution_id}/{step_id}")
        return found

    async def task(self, request: web.Request) -> web.Response:
        found = await self.seen_task(request)
        html = task_pages.task_page(found, who(request), request.query.get("message", ""))
        return web.Response(text=html, content_type="text/html")

    async def seen_letters(self, request: web.Request) -> list[Letter]:
        """The dead letters of the user's tenants: a letter's tenant is its execution's
        as recorded; a letter of no recorded execution only those of every tenant see."""
        letters = await read_letters(self.settings)
        user = operator(request)
        if user.tenants is None:
            return letters
        ids = sorted({letter.execution_id for letter in letters if letter.execution_id})
        async with self.pool().acquire() as connection:
            rows = await connection.fetch(
                "SELECT execution_id, tenant_id FROM workflow_executions"
                " WHERE execution_id = ANY($1::text[])",
                ids,
            )
        tenant = {row["execution_id"]: row["tenant_id"] for row in rows}
        return [x for x in letters if user.sees(tenant.get(x.execution_id or ""))]

    async def dead_letters(self, request: web.Request) -> web.Response:
        letters = await self.seen_letters(request)
        message = request.query.get("message", "")
        html = pages.dead_letters_page(letters, who(request), message)
        return web.Response(text=html, content_type="text/html")

    async def figures(self, request: web.Request) -> web.Response:
        """The workers' counters add up every tenant's work: only for those who see
        every tenant (others have the analytics of their own)."""
        if operator(request).tenants is not None:
            raise not_found("figures")
        topic = TopicNames.for_prefix(self.settings.topic_prefix).workers
        workers = await read_announcements(kafka_access(self.settings), topic)
        now = now_ms()
        texts = await scrape([w for w in workers if w.live(now)])
        figures = seed_figures(add_up(texts.values()))
        html = pages.figures_page(figures, len(texts), who(request))
        return web.Response(text=html, content_type="text/html")

    # Actions: each names the signed-in user as who asked ------------------------------

    async def act(self, request: web.Request) -> web.Response:
        execution_id = (await self.seen_execution(request)).execution_id
        form = await request.post()
        by = operator(request).name
        action = ReplayAction(str(form.get("action", "retry")))
        step = str(form.get("step") or "") or None if action is ReplayAction.RERUN_FROM else None
        try:
            reason = str(form.get("reason", ""))
            run = await self.client.replay(execution_id, action, step, by, reason)
            await self.client.flush()
            message = f"{action} requested by {by} (run {run})"
        except ReplayRefused as refusal:
            message = f"refused: {refusal}"
        raise web.HTTPSeeOther(f"/executions/{execution_id}?{urlencode({'message': message})}")

    async def answer(self, request: web.Request) -> web.Response:
        """A person's answer to a task, read from its form, checked against the schema
        by the client; a refusal says why, and nothing is sent."""
        found = await self.seen_task(request)
        execution_id, step_id = found.execution_id, found.step_id
        form = {key: str(value) for key, value in (await request.post()).items()}
        by = operator(request).name
        answer = task_pages.answer_from(found.form, form)
        try:
            attempt = await self.client.tasks.answer(execution_id, step_id, answer, by)
            await self.client.flush()
            message = f"answered by {by} (attempt {attempt})"
        except AnswerRefused as refusal:
            message = f"refused: {refusal}"
        where = f"/tasks/{execution_id}/{step_id}"
        raise web.HTTPSeeOther(f"{where}?{urlencode({'message': message})}")

    async def bulk_retry(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        user = operator(request)
        filters = {name: form.get(name, "") for name in FILTERS} | {"status": "failed"}
        ids = await self.failed_ids(filters, user)
        sent = 0
        for execution_id in ids:
            try:
                reason = form.get("reason", "")
                await self.client.replay(execution_id, ReplayAction.RETRY, None, user.name, reason)
                sent += 1
            except ReplayRefused:
                continue
            await asyncio.sleep(1 / BULK_PER_SECOND)  # paced: a bulk retry is not a flood
        await self.client.flush()
        message = f"retry requested by {user.name} for {sent} of {len(ids)} failed executions"
        query = {k: v for k, v in filters.items() if v} | {"message": message}
        raise web.HTTPSeeOther(f"/executions?{urlencode(query)}")

    async def failed_ids(self, filters: dict[str, str], user: Operator) -> list[str]:
        ids: list[str] = []
        after = None
        async with self.pool().acquire() as connection:
            while len(ids) < BULK_LIMIT:
                page = await list_executions(
                    connection,
                    **query_of(filters),
                    after=after,
                    limit=200,
                    tenant_ids=tenants_of(user),
                )
                ids += [e.execution_id for e in page.executions]
                if page.next_token is None:
                    break
                after = page.next_token
        return ids[:BULK_LIMIT]

    async def redrive(self, request: web.Request) -> web.Response:
        """Re-drives the letters the user sees, and only those."""
        result = await redrive(self.settings, await self.seen_letters(request))
        by = operator(request).name
        message = f"re-driven by {by}: {len(result.sent)} sent, {len(result.skipped)} skipped"
        raise web.HTTPSeeOther(f"/dead-letters?{urlencode({'message': message})}")


def query_of(filters: dict[str, str]) -> dict[str, Any]:
    """List arguments from the page's filters (times are local, as typed)."""
    key, _, value = filters.get("input", "").partition("=")

    def moment(text: str) -> datetime | None:
        return datetime.fromisoformat(text).astimezone() if text else None

    return {
        "workflow_id": filters.get("workflow") or None,
        "status": filters.get("status") or None,
        "tenant_id": filters.get("tenant") or None,
        "since": moment(filters.get("since", "")),
        "until": moment(filters.get("until", "")),
        "input_value": (key.strip(), value.strip()) if key.strip() and value else None,
    }


def run_console(settings: Settings, host: str, port: int) -> None:
    web.run_app(Console(settings).application(), host=host, port=port, print=None)
