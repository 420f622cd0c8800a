"""The console's pages as HTML: plain server-rendered markup, one stylesheet and one
small script of our own (console/static), nothing fetched from the internet. Pure:
data in, markup out; every value from outside is escaped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from stepstream.client.figures import Figure
from stepstream.console import charts
from stepstream.console.charts import Bar
from stepstream.console.dag import to_svg
from stepstream.infra.executions import ExecutionRecord, Page
from stepstream.infra.operators import Role
from stepstream.workflows import WorkflowDefinition
from stepstream.workflows.critical_path import critical_path

if TYPE_CHECKING:
    from stepstream.console.access import Who

STATUSES = ("", "running", "completed", "failed", "cancelled", "rejected")


def layout(title: str, body: str, message: str = "", who: Who | None = None) -> str:
    notice = f'<p class="message" role="status">{escape(message)}</p>' if message else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · stepstream</title>"
        '<link rel="stylesheet" href="/static/console.css"></head><body>'
        f"{_nav(who)}<main><h1>{escape(title)}</h1>"
        f'{notice}{body}</main><script src="/static/console.js"></script></body></html>'
    )


def _nav(who: Who | None) -> str:
    """The links, a search by business value, and who is signed in (with sign-out)."""
    if who is None:
        return "<nav><span>stepstream</span></nav>"
    links = ["executions", "tasks", "dead-letters", "analytics"]
    if who.every_tenant:
        links.append("figures")  # the workers' counters: of every tenant at once
    if who.role >= Role.ADMIN:
        links.append("users")
    anchors = "".join(f'<a href="/{link}">{link.replace("-", " ")}</a>' for link in links)
    search = (
        '<form class="search" method="get" action="/executions" role="search">'
        '<input name="input" placeholder="find: key=value" aria-label="find an execution'
        ' by a business value"><button type="submit">find</button></form>'
    )
    user = (
        f'<span class="who" title="{escape(who.scope)}">{escape(who.name)}'
        f" ({who.role}, {escape(who.scope)})</span>"
        f'<form class="sign-out" method="post" action="/sign-out">{csrf_field(who)}'
        '<button type="submit">sign out</button></form>'
    )
    return f"<nav>{anchors}{search}{user}</nav>"


def csrf_field(who: Who) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(who.csrf)}">'


def text_field(name: str, value: str, label: str, kind: str = "text") -> str:
    return (
        f'<label>{escape(label)} <input type="{kind}" name="{name}"'
        f' value="{escape(value)}"></label>'
    )


def operator_fields(who: Who) -> str:
    """An action's form says who sends it: the signed-in user, not a typed name."""
    return f'<span class="as">as {escape(who.name)}</span>{csrf_field(who)}'


def executions_page(filters: Mapping[str, str], page: Page, who: Who, message: str = "") -> str:
    status_options = "".join(
        f'<option value="{s}"{" selected" if filters.get("status", "") == s else ""}>'
        f"{s or 'any'}</option>"
        for s in STATUSES
    )
    form = (
        '<form class="filters" method="get" action="/executions">'
        + text_field("workflow", filters.get("workflow", ""), "workflow")
        + f'<label>status <select name="status">{status_options}</select></label>'
        + text_field("tenant", filters.get("tenant", ""), "tenant")
        + text_field("since", filters.get("since", ""), "since", "datetime-local")
        + text_field("until", filters.get("until", ""), "until", "datetime-local")
        + text_field("input", filters.get("input", ""), "input key=value")
        + '<button type="submit">filter</button></form>'
    )
    rows = "".join(
        f'<tr data-execution="{escape(e.execution_id)}">'
        f'<td><a href="/executions/{escape(e.execution_id)}">{escape(e.execution_id)}</a></td>'
        f"<td>{escape(e.workflow_id)} v{e.workflow_version}</td>"
        f'<td class="status {escape(e.status)}">{escape(e.status)}</td>'
        f"<td>{escape(e.tenant_id)}</td><td>{e.started_at:%Y-%m-%d %H:%M:%S}</td>"
        f"<td>{escape(e.error or '')}</td></tr>"
        for e in page.executions
    )
    table = (
        '<table class="executions"><thead><tr><th>execution</th><th>workflow</th>'
        "<th>status</th><th>tenant</th><th>started</th><th>error</th></tr></thead>"
        f"<tbody>{rows or '<tr><td colspan=6>none</td></tr>'}</tbody></table>"
    )
    more = ""
    if page.next_token:
        query = urlencode({**{k: v for k, v in filters.items() if v}, "after": page.next_token})
        more = f'<p><a class="next" href="/executions?{escape(query)}">next page</a></p>'
    bulk = ""
    if who.may_act and filters.get("status") == "failed":
        hidden = "".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
            for k, v in filters.items()
            if v
        )
        bulk = (
            '<form class="bulk" method="post" action="/actions/bulk-retry">'
            f"{hidden}{operator_fields(who)}"
            '<label>reason <input name="reason"></label>'
            '<button type="submit">retry every failed execution that matches</button></form>'
        )
    return layout("executions", form + bulk + table + more, message, who)


def execution_page(
    record: ExecutionRecord,
    definition: WorkflowDefinition | None,
    states: Mapping[str, str],
    reasons: Mapping[str, str],
    who: Who,
    message: str = "",
    fans: Mapping[str, str] | None = None,
) -> str:
    head = (
        f"<p>workflow {escape(record.workflow_id)} v{record.workflow_version}, tenant "
        f"{escape(record.tenant_id)}, status "
        f'<strong id="status" class="status {escape(record.status)}">{escape(record.status)}'
        f"</strong>{' — ' + escape(record.error) if record.error else ''}</p>"
    )
    bars = timeline_bars(record, definition)
    graph = to_svg(definition, states, last_durations(bars)) if definition is not None else ""
    waits = "".join(
        f"<li><strong>{escape(step)}</strong>: {escape(why)}</li>" for step, why in reasons.items()
    )
    why = f'<h2>why steps are not running</h2><ul class="reasons">{waits}</ul>' if waits else ""
    attempts = "".join(
        f"<tr><td>{escape(a.step_id)}</td><td>{a.attempt}</td>"
        f'<td class="status {escape(a.status)}">{escape(a.status)}</td>'
        f"<td>{escape(a.worker or '')}</td><td>{escape(a.started_at or '')}</td>"
        f"<td>{escape(a.finished_at or '')}</td>"
        f"<td><pre>{escape(_input_of(record, definition, a.step_id))}</pre></td>"
        f"<td><pre>{escape(json.dumps(a.output) if a.output is not None else '')}</pre></td>"
        f"<td>{escape(a.error or '')}</td></tr>"
        for a in record.steps
    )
    timeline = (
        f"<h2>timeline</h2>{charts.timeline(bars)}"
        '<h2>attempts</h2><table class="attempts"><thead><tr><th>step</th><th>attempt</th>'
        "<th>status</th><th>worker</th><th>started</th><th>finished</th><th>input</th>"
        f"<th>output</th><th>error</th></tr></thead><tbody>{attempts}</tbody></table>"
    )
    ignored = "".join(
        f"<tr><td>{escape(i.step_id)}</td><td>{i.attempt}</td><td>{escape(i.report)}</td>"
        f"<td>{escape(i.worker or '')}</td><td>{escape(i.reason)}</td></tr>"
        for i in record.ignored
    )
    if ignored:
        timeline += (
            '<h2>reports the coordinator ignored</h2><table class="ignored"><thead><tr>'
            "<th>step</th><th>attempt</th><th>report</th><th>worker</th><th>reason</th></tr>"
            f"</thead><tbody>{ignored}</tbody></table>"
        )
    human = [s.id for s in definition.steps if s.human is not None] if definition else []
    if human:
        links = "".join(
            f'<a href="/tasks/{escape(record.execution_id)}/{escape(step)}">{escape(step)}</a> '
            for step in human
        )
        timeline = f'<p class="task-links">human tasks: {links}</p>' + timeline
    actions = _actions(record, definition, who) if who.may_act else ""
    body = (
        f'<section id="execution" data-execution="{escape(record.execution_id)}"'
        f' data-live="{"no" if record.ended else "yes"}">{head}{_family(record, fans or {})}'
        f"{graph}</section>{actions}{why}{timeline}"
    )
    return layout(f"execution {record.execution_id}", body, message, who)


def _moment(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)


def timeline_bars(record: ExecutionRecord, definition: WorkflowDefinition | None) -> list[Bar]:
    """Every attempt that ran, in the order they were released, those of the critical
    path (the chain of dependencies that ended last) marked."""
    ran = [a for a in record.steps if a.attempt > 0]
    finished = {
        a.step_id: moment.timestamp()
        for a in ran
        if a.status == "completed" and (moment := _moment(a.finished_at)) is not None
    }
    on_path: set[str] = set()
    if definition is not None and record.status == "completed":
        on_path = set(critical_path({s.id: s.depends_on for s in definition.steps}, finished))
    bars = [
        Bar(
            a.step_id,
            a.attempt,
            a.status,
            _moment(a.released_at),
            _moment(a.started_at),
            _moment(a.finished_at),
            a.step_id in on_path and a.status == "completed",
        )
        for a in ran
    ]
    return sorted(bars, key=lambda b: (b.released or b.started or b.finished, b.step_id))


def last_durations(bars: Iterable[Bar]) -> dict[str, str]:
    """How long each step's last attempt ran, for the graph."""
    shown = {}
    for bar in sorted(bars, key=lambda b: b.attempt):
        start = bar.started or bar.released
        if start and bar.finished:
            shown[bar.step_id] = charts.shown_ms((bar.finished - start).total_seconds() * 1000)
    return shown


def _family(record: ExecutionRecord, fans: Mapping[str, str]) -> str:
    """Fan-outs' progress, and links to the parent that started this execution and to
    the children its steps started."""
    parts = [
        f'<p class="fan-out"><strong>{escape(step)}</strong>: {escape(done)}</p>'
        for step, done in fans.items()
    ]
    if record.parent:
        parent = record.parent["parent_execution_id"]
        parts.append(
            f'<p class="parent">started by <a href="/executions/{escape(parent)}">'
            f"{escape(parent)}</a>, step {escape(record.parent['step_id'])}</p>"
        )
    for child in record.children:
        child_id = child["child_execution_id"]
        parts.append(
            f'<p class="child">step {escape(child["step_id"])} started '
            f'<a href="/executions/{escape(child_id)}">{escape(child_id)}</a>'
            f" ({escape(child['workflow_id'])})</p>"
        )
    return "".join(parts)


def _input_of(record: ExecutionRecord, definition: WorkflowDefinition | None, step: str) -> str:
    """What the step was given: the workflow input and its dependencies' outputs."""
    if definition is None or step not in definition.step_by_id:
        return ""
    outputs = record.outputs or {}
    done = {a.step_id: a.output for a in record.steps if a.status == "completed"}
    steps = {d: outputs.get(d, done.get(d)) for d in definition.step_by_id[step].depends_on}
    return json.dumps({"input": record.input, "steps": steps})


def _actions(record: ExecutionRecord, definition: WorkflowDefinition | None, who: Who) -> str:
    choices = [("retry", "retry the failed step"), ("resume", "resume"), ("cancel", "cancel")]
    if record.ended and definition is not None:
        choices.append(("rerun-from", "rerun from a step"))
    options = "".join(f'<option value="{v}">{escape(label)}</option>' for v, label in choices)
    steps = "".join(
        f'<option value="{escape(s.id)}">{escape(s.id)}</option>'
        for s in (definition.steps if definition else ())
    )
    return (
        f'<form class="actions" method="post" action="/executions/{escape(record.execution_id)}'
        f'/actions"><label>action <select name="action">{options}</select></label>'
        f'<label>step <select name="step"><option value=""></option>{steps}</select></label>'
        f'<label>reason <input name="reason"></label>{operator_fields(who)}'
        '<button type="submit">send</button></form>'
    )


def dead_letters_page(letters: Iterable[Any], who: Who, message: str = "") -> str:
    rows = "".join(
        f"<tr><td>{escape(letter.letter_id)}</td><td>{escape(letter.execution_id or '-')}</td>"
        f"<td>{escape(letter.error)}</td></tr>"
        for letter in letters
    )
    redrive = (
        '<form class="redrive" method="post" action="/actions/redrive">'
        f'{operator_fields(who)}<button type="submit">re-drive every letter once</button>'
        "</form>"
        if who.may_act
        else ""
    )
    table = (
        '<table class="letters"><thead><tr><th>letter</th><th>execution</th><th>reason</th>'
        f"</tr></thead><tbody>{rows or '<tr><td colspan=3>none</td></tr>'}</tbody></table>"
    )
    return layout("dead letters", redrive + table, message, who)


def figures_page(figures: Iterable[Figure], workers: int, who: Who) -> str:
    rows = "".join(
        f'<tr class="{"" if f.met is None else "ok" if f.met else "off"}">'
        f"<td>{escape(f.name)}</td><td>{escape(f.shown())}</td><td>{escape(f.target)}</td></tr>"
        for f in figures
    )
    body = (
        f"<p>{workers} live workers, added up since they started.</p>"
        '<table class="figures"><thead><tr><th>figure</th><th>value</th><th>target</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )
    return layout("figures", body, who=who)
