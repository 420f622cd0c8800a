"""The operator console: an aiohttp application over the same sources as the command
line (PostgreSQL for executions, checkpoints for why steps wait, the topics for live
events, the workers' metrics for the figures). Actions go through the replay topic and
need the operator token (STEPSTREAM_CONSOLE_TOKEN); without one the console is
read-only. Every action names who asked, which the persister records."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from stepstream.client import AnswerRefused, ReplayRefused, WorkflowClient
from stepstream.client.dead_letters import read_letters, redrive
from stepstream.client.figures import add_up, scrape, seed_figures
from stepstream.client.watch import ExecutionWatcher, read_checkpoint, step_status
from stepstream.console import pages, task_pages
from stepstream.infra.executions import describe_execution, list_executions
from stepstream.infra.human_tasks import find_task, open_tasks
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


class Refused(web.HTTPForbidden):
    pass


class Console:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self._client: WorkflowClient | None = None  # made in the server's loop, at startup
        self.resources = contextlib.AsyncExitStack()

    @property
    def client(self) -> WorkflowClient:
        assert self._client is not None, "the console has not started"
        return self._client

    @property
    def writable(self) -> bool:
        return bool(self.settings.console_token)

    async def start(self, app: web.Application) -> None:
        self.pool = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=4)
        client = WorkflowClient(self.settings, follow_outcomes=False)
        self._client = await self.resources.enter_async_context(client)

    async def stop(self, app: web.Application) -> None:
        await self.resources.aclose()
        if self.pool is not None:
            await self.pool.close()

    def application(self) -> web.Application:
        app = web.Application()
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        app.router.add_get("/", self.home)
        app.router.add_get("/executions", self.executions)
        app.router.add_get("/executions/{id}", self.execution)
        app.router.add_get("/executions/{id}/events", self.events)
        app.router.add_post("/executions/{id}/actions", self.act)
        app.router.add_post("/actions/bulk-retry", self.bulk_retry)
        app.router.add_get("/tasks", self.tasks)
        app.router.add_get("/tasks/{id}/{step}", self.task)
        app.router.add_post("/tasks/{id}/{step}/answer", self.answer)
        app.router.add_get("/dead-letters", self.dead_letters)
        app.router.add_post("/actions/redrive", self.redrive)
        app.router.add_get("/figures", self.figures)
        app.router.add_static("/static", STATIC)
        return app

    # Pages --------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/executions")

    async def executions(self, request: web.Request) -> web.Response:
        filters = {name: request.query.get(name, "").strip() for name in FILTERS}
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            page = await list_executions(
                connection, **query_of(filters), after=request.query.get("after")
            )
        html = pages.executions_page(filters, page, self.writable, request.query.get("message", ""))
        return web.Response(text=html, content_type="text/html")

    async def execution(self, request: web.Request) -> web.Response:
        execution_id = request.match_info["id"]
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            record = await describe_execution(connection, execution_id)
            body = None
            if record is not None:
                body = await connection.fetchval(
                    "SELECT body FROM workflow_definitions WHERE id = $1 AND version = $2",
                    record.workflow_id,
                    record.workflow_version,
                )
        if record is None:
            raise web.HTTPNotFound(text=f"no execution {execution_id} is recorded")
        definition: WorkflowDefinition | None = build_definition(json.loads(body)) if body else None
        states, reasons, fans = await self.states_of(execution_id)
        html = pages.execution_page(
            record,
            definition,
            states,
            reasons,
            self.writable,
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
        execution_id = request.match_info["id"]
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
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            found = await open_tasks(
                connection, filters["tenant"] or None, filters["assignee"] or None
            )
        html = task_pages.tasks_page(
            filters, found, self.writable, request.query.get("message", "")
        )
        return web.Response(text=html, content_type="text/html")

    async def task(self, request: web.Request) -> web.Response:
        execution_id, step_id = request.match_info["id"], request.match_info["step"]
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            found = await find_task(connection, execution_id, step_id)
        if found is None:
            raise web.HTTPNotFound(text=f"no task is recorded for {execution_id}/{step_id}")
        html = task_pages.task_page(found, self.writable, request.query.get("message", ""))
        return web.Response(text=html, content_type="text/html")

    async def dead_letters(self, request: web.Request) -> web.Response:
        letters = await read_letters(self.settings)
        html = pages.dead_letters_page(letters, self.writable, request.query.get("message", ""))
        return web.Response(text=html, content_type="text/html")

    async def figures(self, request: web.Request) -> web.Response:
        topic = TopicNames.for_prefix(self.settings.topic_prefix).workers
        workers = await read_announcements(kafka_access(self.settings), topic)
        now = now_ms()
        texts = await scrape([w for w in workers if w.live(now)])
        html = pages.figures_page(seed_figures(add_up(texts.values())), len(texts), self.writable)
        return web.Response(text=html, content_type="text/html")

    # Actions ------------------------------------------------------------------------

    async def authorized(self, request: web.Request) -> dict[str, str]:
        form = {key: str(value) for key, value in (await request.post()).items()}
        if not self.writable:
            raise refused("read-only console: set STEPSTREAM_CONSOLE_TOKEN to allow actions")
        if not hmac.compare_digest(form.get("token", ""), self.settings.console_token):
            raise refused("refused: wrong operator token")
        if not form.get("by", "").strip():
            raise refused("refused: say who asks (operator)")
        return form

    async def act(self, request: web.Request) -> web.Response:
        execution_id = request.match_info["id"]
        form = await self.authorized(request)
        action = ReplayAction(form.get("action", "retry"))
        step = form.get("step") or None if action is ReplayAction.RERUN_FROM else None
        try:
            run = await self.client.replay(
                execution_id, action, step, form["by"], form.get("reason", "")
            )
            await self.client.flush()
            message = f"{action} requested by {form['by']} (run {run})"
        except ReplayRefused as refusal:
            message = f"refused: {refusal}"
        raise web.HTTPSeeOther(f"/executions/{execution_id}?{urlencode({'message': message})}")

    async def answer(self, request: web.Request) -> web.Response:
        """A person's answer to a task, read from its form, checked against the schema
        by the client; a refusal says why, and nothing is sent."""
        execution_id, step_id = request.match_info["id"], request.match_info["step"]
        form = await self.authorized(request)
        task = await self.client.tasks.find(execution_id, step_id)
        if task is None:
            raise web.HTTPNotFound(text=f"no task is recorded for {execution_id}/{step_id}")
        answer = task_pages.answer_from(task.form, form)
        try:
            attempt = await self.client.tasks.answer(execution_id, step_id, answer, form["by"])
            await self.client.flush()
            message = f"answered by {form['by']} (attempt {attempt})"
        except AnswerRefused as refusal:
            message = f"refused: {refusal}"
        where = f"/tasks/{execution_id}/{step_id}"
        raise web.HTTPSeeOther(f"{where}?{urlencode({'message': message})}")

    async def bulk_retry(self, request: web.Request) -> web.Response:
        form = await self.authorized(request)
        filters = {name: form.get(name, "") for name in FILTERS} | {"status": "failed"}
        ids: list[str] = []
        after = None
        assert self.pool is not None
        async with self.pool.acquire() as connection:
            while len(ids) < BULK_LIMIT:
                page = await list_executions(
                    connection, **query_of(filters), after=after, limit=200
                )
                ids += [e.execution_id for e in page.executions]
                if page.next_token is None:
                    break
                after = page.next_token
        sent = 0
        for execution_id in ids[:BULK_LIMIT]:
            try:
                await self.client.replay(
                    execution_id, ReplayAction.RETRY, None, form["by"], form.get("reason", "")
                )
                sent += 1
            except ReplayRefused:
                continue
            await asyncio.sleep(1 / BULK_PER_SECOND)
        await self.client.flush()
        message = f"retry requested by {form['by']} for {sent} of {len(ids)} failed executions"
        query = {k: v for k, v in filters.items() if v} | {"message": message}
        raise web.HTTPSeeOther(f"/executions?{urlencode(query)}")

    async def redrive(self, request: web.Request) -> web.Response:
        form = await self.authorized(request)
        result = await redrive(self.settings, await read_letters(self.settings))
        message = (
            f"re-driven by {form['by']}: {len(result.sent)} sent, {len(result.skipped)} skipped"
        )
        raise web.HTTPSeeOther(f"/dead-letters?{urlencode({'message': message})}")


def refused(reason: str) -> web.HTTPForbidden:
    html = pages.layout("refused", f'<p class="refused">{reason}</p>', reason)
    return web.HTTPForbidden(text=html, content_type="text/html")


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
