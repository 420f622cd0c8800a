"""The console's human task pages: the open tasks, and one task with its form. A form
whose answer is an object of plain fields (text, numbers, yes/no, a choice) is shown as
those fields; any other is answered as JSON. The answer is checked against the schema by
the client before anything is sent (`stepstream.client.tasks`). Pure: data in, markup
out; every value from outside is escaped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from stepstream.console.pages import layout, operator_fields, text_field
from stepstream.infra.human_tasks import HumanTaskRecord

if TYPE_CHECKING:
    from stepstream.console.access import Who

PLAIN = ("string", "integer", "number", "boolean")
FIELD_PREFIX = "field."


def plain_fields(form: Mapping[str, Any]) -> dict[str, Mapping[str, Any]] | None:
    """The form's fields, when its answer is an object of plain values; None otherwise."""
    properties = form.get("properties")
    if form.get("type") != "object" or not isinstance(properties, Mapping) or not properties:
        return None
    fields = {}
    for name, spec in properties.items():
        if not isinstance(spec, Mapping) or spec.get("type") not in PLAIN:
            return None
        fields[str(name)] = spec
    return fields


def answer_from(form: Mapping[str, Any], posted: Mapping[str, str]) -> Any:
    """The answer a posted form gives: its JSON as typed, or its fields, each read as
    its type says (a value that does not read stays text, for the schema to refuse)."""
    fields = plain_fields(form)
    if fields is None or "answer_json" in posted:
        try:
            return json.loads(posted.get("answer_json", ""))
        except ValueError:
            return posted.get("answer_json", "")
    answer: dict[str, Any] = {}
    for name, spec in fields.items():
        raw = posted.get(FIELD_PREFIX + name, "").strip()
        if raw == "":
            continue  # left empty: absent, so a required field is said to be missing
        answer[name] = _typed(spec.get("type"), raw)
    return answer


def _typed(kind: Any, raw: str) -> Any:
    try:
        if kind == "boolean":
            return {"true": True, "false": False}.get(raw, raw)
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    return raw


def tasks_page(
    filters: Mapping[str, str], tasks: Iterable[HumanTaskRecord], who: Who, message: str = ""
) -> str:
    form = (
        '<form class="filters" method="get" action="/tasks">'
        + text_field("tenant", filters.get("tenant", ""), "tenant")
        + text_field("assignee", filters.get("assignee", ""), "assignee")
        + '<button type="submit">filter</button></form>'
    )
    rows = "".join(
        f'<tr data-task="{escape(t.execution_id)}/{escape(t.step_id)}">'
        f'<td><a href="/tasks/{escape(t.execution_id)}/{escape(t.step_id)}">'
        f"{escape(t.title or t.step_id)}</a></td>"
        f'<td><a href="/executions/{escape(t.execution_id)}">{escape(t.execution_id)}</a></td>'
        f"<td>{escape(t.workflow_id)} v{t.workflow_version}</td><td>{escape(t.tenant_id)}</td>"
        f"<td>{escape(t.assignee or 'anyone')}</td><td>{t.opened_at:%Y-%m-%d %H:%M:%S}</td>"
        f"<td>{'' if t.due_at is None else f'{t.due_at:%Y-%m-%d %H:%M:%S}'}</td></tr>"
        for t in tasks
    )
    table = (
        '<table class="tasks"><thead><tr><th>task</th><th>execution</th><th>workflow</th>'
        "<th>tenant</th><th>for</th><th>opened</th><th>due</th></tr></thead>"
        f"<tbody>{rows or '<tr><td colspan=7>no open tasks</td></tr>'}</tbody></table>"
    )
    return layout("open tasks", form + table, message, who)


def task_page(task: HumanTaskRecord, who: Who, message: str = "") -> str:
    head = (
        f"<p>step <strong>{escape(task.step_id)}</strong> (attempt {task.attempt}) of "
        f'<a href="/executions/{escape(task.execution_id)}">{escape(task.execution_id)}</a>, '
        f"{escape(task.workflow_id)} v{task.workflow_version}, tenant {escape(task.tenant_id)},"
        f" for {escape(task.assignee or 'anyone of the tenant')}: "
        f'<strong id="task-status" class="status {escape(task.status)}">'
        f"{escape(task.status)}</strong></p>"
    )
    if task.answered_by:
        head += (
            f'<p class="answered">answered by {escape(task.answered_by)}'
            f"{'' if task.closed_at is None else f' at {task.closed_at:%Y-%m-%d %H:%M:%S}'}:"
            f" <code>{escape(json.dumps(task.answer))}</code></p>"
        )
    schema = (
        "<details><summary>form (JSON Schema)</summary>"
        f"<pre>{escape(json.dumps(task.form, indent=2))}</pre></details>"
    )
    answer = _answer_form(task, who) if who.may_act and task.status == "open" else ""
    return layout(task.title or f"task {task.step_id}", head + answer + schema, message, who)


def _answer_form(task: HumanTaskRecord, who: Who) -> str:
    fields = plain_fields(task.form)
    required = set(task.form.get("required", []))
    if fields is None:
        inputs = (
            '<label>answer (JSON) <textarea name="answer_json" rows=6 required></textarea></label>'
        )
    else:
        ordered = sorted(fields.items(), key=lambda field: field[0] not in required)
        inputs = "".join(_input(name, spec, name in required) for name, spec in ordered)
    action = f"/tasks/{escape(task.execution_id)}/{escape(task.step_id)}/answer"
    return (
        f'<form class="answer" method="post" action="{action}">{inputs}{operator_fields(who)}'
        '<button type="submit">answer</button></form>'
    )


def _input(name: str, spec: Mapping[str, Any], required: bool) -> str:
    label = escape(str(spec.get("title", name)) + (" *" if required else ""))
    field = escape(FIELD_PREFIX + name)
    choices = spec.get("enum")
    if spec.get("type") == "boolean":
        choices = ["true", "false"]
    if isinstance(choices, list):
        options = "".join(
            f'<option value="{escape(str(c))}">{escape(str(c))}</option>' for c in choices
        )
        empty = '<option value=""></option>'
        return f'<label>{label} <select name="{field}">{empty}{options}</select></label>'
    kind = "number" if spec.get("type") in ("integer", "number") else "text"
    step = ' step="any"' if spec.get("type") == "number" else ""
    return f'<label>{label} <input type="{kind}"{step} name="{field}"></label>'
