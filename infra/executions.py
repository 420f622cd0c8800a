"""Executions as the persister recorded them in PostgreSQL: one query per question.

This is the current state (an indexed table), so `list`, `describe` and `status` cost
the same however long the history; the topics and changelogs are never scanned.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from stepstream.infra.human_tasks import HumanTaskRecord, task_of

DESCRIBE = """
SELECT e.execution_id, e.workflow_id, e.workflow_version, e.tenant_id, e.user_id, e.status,
    e.input, e.outputs, e.failed_step_id, e.error, e.started_at, e.finished_at,
    d.body AS definition,
    (SELECT count(*) FROM workflow_replays r WHERE r.execution_id = e.execution_id) AS replays,
    COALESCE((SELECT json_agg(s ORDER BY s.step_id, s.attempt)
              FROM workflow_execution_steps s WHERE s.execution_id = e.execution_id),
             '[]') AS steps,
    COALESCE((SELECT json_agg(i ORDER BY i.step_id, i.attempt, i.report)
              FROM workflow_ignored_reports i WHERE i.execution_id = e.execution_id),
             '[]') AS ignored,
    COALESCE((SELECT json_agg(t ORDER BY t.opened_at, t.step_id, t.attempt)
              FROM workflow_human_tasks t WHERE t.execution_id = e.execution_id),
             '[]') AS tasks,
    (SELECT row_to_json(c) FROM workflow_children c
      WHERE c.child_execution_id = e.execution_id) AS parent,
    COALESCE((SELECT json_agg(c ORDER BY c.started_at, c.child_execution_id)
              FROM workflow_children c WHERE c.parent_execution_id = e.execution_id),
             '[]') AS children
FROM workflow_executions e
LEFT JOIN workflow_definitions d ON d.id = e.workflow_id AND d.version = e.workflow_version
WHERE e.execution_id = $1
"""

LIST = """
SELECT execution_id, workflow_id, workflow_version, tenant_id, user_id, status,
    failed_step_id, error, started_at, finished_at
FROM workflow_executions
WHERE ($1::text IS NULL OR workflow_id = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR tenant_id = $3)
  AND ($4::timestamptz IS NULL OR started_at >= $4)
  AND ($5::timestamptz IS NULL OR started_at < $5)
  AND ($6::timestamptz IS NULL OR (started_at, execution_id) < ($6, $7))
  AND ($9::text IS NULL OR input ->> $9 = $10)
  AND ($11::text[] IS NULL OR tenant_id = ANY($11))
ORDER BY started_at DESC, execution_id DESC
LIMIT $8
"""

TERMINAL = frozenset({"completed", "failed", "cancelled", "rejected"})


@dataclass(frozen=True)
class StepAttempt:
    step_id: str
    attempt: int
    step_type: str
    status: str
    output: Any
    error: str | None
    worker: str | None
    started_at: str | None
    finished_at: str | None
    released_at: str | None = None  # when the coordinator released it (recorded since 0012)


@dataclass(frozen=True)
class IgnoredReport:
    """A worker's report the coordinator did not apply, and why: not an attempt's end."""

    step_id: str
    attempt: int
    report: str  # "completed" or "failed": the kind of report
    reason: str
    worker: str | None
    decided_at: str


@dataclass(frozen=True)
class ExecutionRecord:
    execution_id: str
    workflow_id: str
    workflow_version: int
    tenant_id: str
    user_id: str | None
    status: str
    failed_step_id: str | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    input: Any = None
    outputs: Any = None
    replays: int = 0  # operators' replay requests (resume, retry, rerun-from)
    steps: list[StepAttempt] = field(default_factory=list)  # the coordinator's outcomes
    ignored: list[IgnoredReport] = field(default_factory=list)
    tasks: list[HumanTaskRecord] = field(default_factory=list)  # human steps' tasks
    step_order: list[str] = field(default_factory=list)  # from its definition, if known
    # Sub-workflows: the parent that started this one ({parent_execution_id, step_id,
    # attempt, depth}), and the children its steps started, oldest first.
    parent: dict[str, Any] | None = None
    children: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        result = {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in vars(self).items()
            if name not in ("steps", "ignored", "tasks", "step_order", "parent", "children")
        }
        if self.step_order or self.steps:
            result["steps"] = [vars(step) for step in self.steps]
            result["ignored_reports"] = [vars(report) for report in self.ignored]
        if self.tasks:
            result["tasks"] = [task.as_dict() for task in self.tasks]
        if self.parent:
            result["parent"] = self.parent
        if self.children:
            result["children"] = self.children
        return result


_STEP_FIELDS = tuple(StepAttempt.__dataclass_fields__)
_IGNORED_FIELDS = tuple(IgnoredReport.__dataclass_fields__)


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


async def describe_execution(
    connection: asyncpg.Connection, execution_id: str
) -> ExecutionRecord | None:
    row = await connection.fetchrow(DESCRIBE, execution_id)
    if row is None:
        return None
    definition = _json(row["definition"]) or {}
    steps = [
        StepAttempt(**{k: step.get(k) for k in _STEP_FIELDS}) for step in json.loads(row["steps"])
    ]
    ignored = [
        IgnoredReport(**{k: i[k] for k in _IGNORED_FIELDS}) for i in json.loads(row["ignored"])
    ]
    return ExecutionRecord(
        **{name: row[name] for name in _COLUMNS},
        input=_json(row["input"]),
        outputs=_json(row["outputs"]),
        replays=row["replays"],
        steps=steps,
        ignored=ignored,
        tasks=[task_of(task) for task in json.loads(row["tasks"])],
        parent=_json(row["parent"]),
        children=json.loads(row["children"]),
        step_order=[step["id"] for step in definition.get("steps", [])],
    )


@dataclass(frozen=True)
class Page:
    executions: list[ExecutionRecord]
    next_token: str | None  # pass as `after` for the next page; None on the last


async def list_executions(
    connection: asyncpg.Connection,
    *,
    workflow_id: str | None = None,
    status: str | None = None,
    tenant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after: str | None = None,
    input_value: tuple[str, str] | None = None,
    tenant_ids: Sequence[str] | None = None,
) -> Page:
    """Newest first. Pages are keyset-paginated: a token names the last row shown, so a
    page costs the same at any depth and rows arriving meanwhile do not shift pages.
    `input_value` (key, value): only executions whose input has that top-level value.
    `tenant_ids`: only executions of these tenants (a console user's scope)."""
    cursor_at, cursor_id = decode_token(after) if after else (None, None)
    key, value = input_value or (None, None)
    rows = await connection.fetch(
        LIST,
        *(workflow_id, status, tenant_id, since, until, cursor_at, cursor_id, limit + 1),
        *(key, value, None if tenant_ids is None else list(tenant_ids)),
    )
    records = [ExecutionRecord(**{name: row[name] for name in _COLUMNS}) for row in rows]
    more = len(records) > limit
    records = records[:limit]
    token = encode_token(records[-1]) if more else None
    return Page(records, token)


_COLUMNS = (
    "execution_id",
    "workflow_id",
    "workflow_version",
    "tenant_id",
    "user_id",
    "status",
    "failed_step_id",
    "error",
    "started_at",
    "finished_at",
)


def encode_token(record: ExecutionRecord) -> str:
    raw = f"{record.started_at.isoformat()}|{record.execution_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime, str]:
    """Raises ValueError for a token this module did not write."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        started_at, execution_id = raw.split("|", 1)
        return datetime.fromisoformat(started_at), execution_id
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"not a page token: {token!r}") from error
