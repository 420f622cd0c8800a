"""Human tasks as the persister recorded them (workflow_human_tasks): the open ones for
a tenant or an assignee, and one task with its form. One query each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# Open: not answered or timed out, and its execution is not known to have ended (the
# closing update of an execution's end may come in an earlier batch than the opening).
LIST_OPEN = """
SELECT t.*
FROM workflow_human_tasks t
LEFT JOIN workflow_executions e ON e.execution_id = t.execution_id
WHERE t.status = 'open' AND COALESCE(e.status, 'running') = 'running'
  AND ($1::text IS NULL OR t.tenant_id = $1)
  AND ($2::text IS NULL OR t.assignee = $2 OR ($3 AND t.assignee IS NULL))
  AND ($5::text[] IS NULL OR t.tenant_id = ANY($5))
ORDER BY t.opened_at, t.execution_id, t.step_id
LIMIT $4
"""

TASK = """
SELECT t.*
FROM workflow_human_tasks t
WHERE t.execution_id = $1 AND t.step_id = $2
ORDER BY t.attempt DESC
LIMIT 1
"""


@dataclass(frozen=True)
class HumanTaskRecord:
    execution_id: str
    step_id: str
    attempt: int
    tenant_id: str
    workflow_id: str
    workflow_version: int
    assignee: str | None
    title: str | None
    form: Any
    opened_at: datetime
    due_at: datetime | None
    status: str
    answered_by: str | None
    answer: Any
    closed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in vars(self).items()
        }


def task_of(row: asyncpg.Record | dict[str, Any]) -> HumanTaskRecord:
    values = dict(row)
    for name in ("form", "answer"):
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    for name in ("opened_at", "due_at", "closed_at"):
        if isinstance(values[name], str):
            values[name] = datetime.fromisoformat(values[name])
    return HumanTaskRecord(**{name: values[name] for name in HumanTaskRecord.__dataclass_fields__})


async def open_tasks(
    connection: asyncpg.Connection,
    tenant_id: str | None = None,
    assignee: str | None = None,
    include_unassigned: bool = True,
    limit: int = 100,
    tenant_ids: Sequence[str] | None = None,
) -> list[HumanTaskRecord]:
    """Open tasks, oldest first. With `assignee`: theirs, and (`include_unassigned`)
    those anyone of the tenant may answer. `tenant_ids`: only these tenants' tasks."""
    rows = await connection.fetch(
        LIST_OPEN,
        tenant_id,
        assignee,
        include_unassigned,
        limit,
        None if tenant_ids is None else list(tenant_ids),
    )
    return [task_of(row) for row in rows]


async def find_task(
    connection: asyncpg.Connection, execution_id: str, step_id: str
) -> HumanTaskRecord | None:
    """The step's latest task, open or not."""
    row = await connection.fetchrow(TASK, execution_id, step_id)
    return None if row is None else task_of(row)
