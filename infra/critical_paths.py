"""Critical paths of completed executions, recorded by the persister in the batch that
completes them (workflow_critical_steps; a trigger counts them for the analytics).

An execution's steps and its completion come from different topics, so they may reach
the persister in different batches: a path is recorded once every step of the definition
has a row (run or skipped), whichever batch brings the last one. Recording twice changes
nothing (ON CONFLICT DO NOTHING)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

import asyncpg

from stepstream.workflows import build_definition
from stepstream.workflows.critical_path import critical_path

# The latest finish of each step of these executions, if they completed.
FINISHES = """
SELECT e.execution_id, e.workflow_id, e.workflow_version, e.tenant_id, e.finished_at AS ended_at,
    s.step_id, max(s.finished_at) AS finished_at
FROM workflow_executions e JOIN workflow_execution_steps s ON s.execution_id = e.execution_id
WHERE e.execution_id = ANY($1::text[]) AND e.status = 'completed'
  AND s.status IN ('completed', 'skipped') AND s.finished_at IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6
"""

INSERT_CRITICAL = """
INSERT INTO workflow_critical_steps (execution_id, step_id, workflow_id, workflow_version,
    tenant_id, finished_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (execution_id, step_id) DO NOTHING
"""

Dependencies = dict[str, tuple[str, ...]]


class CriticalPaths:
    """Keeps each definition version's dependencies (versions never change)."""

    def __init__(self) -> None:
        self.dependencies: dict[tuple[str, int], Dependencies] = {}

    async def record(self, connection: asyncpg.Connection, execution_ids: Iterable[str]) -> int:
        """Records the paths of those of `execution_ids` that completed with every step
        recorded; returns how many executions had one."""
        rows = await connection.fetch(FINISHES, sorted(set(execution_ids)))
        if not rows:
            return 0
        executions: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            executions.setdefault(row["execution_id"], []).append(row)
        await self._load(connection, {(r["workflow_id"], r["workflow_version"]) for r in rows})
        records = []
        for execution_id, steps in executions.items():
            first = steps[0]
            depends_on = self.dependencies.get((first["workflow_id"], first["workflow_version"]))
            finished: dict[str, datetime] = {s["step_id"]: s["finished_at"] for s in steps}
            if depends_on is None or not set(depends_on) <= set(finished):
                continue  # some steps' rows are still to come
            times = {step: finished[step].timestamp() for step in depends_on}
            head = (first["workflow_id"], first["workflow_version"], first["tenant_id"])
            for step in critical_path(depends_on, times):
                records.append((execution_id, step, *head, first["ended_at"]))
        if records:
            await connection.executemany(INSERT_CRITICAL, records)
        return len({r[0] for r in records})

    async def _load(self, connection: asyncpg.Connection, versions: set[tuple[str, int]]) -> None:
        missing = [v for v in versions if v not in self.dependencies]
        if not missing:
            return
        rows = await connection.fetch(
            "SELECT id, version, body FROM workflow_definitions"
            " WHERE (id, version) IN (SELECT * FROM unnest($1::text[], $2::int[]))",
            [v[0] for v in missing],
            [v[1] for v in missing],
        )
        for row in rows:  # read as the engine reads it (steps in order depend implicitly)
            definition = build_definition(json.loads(row["body"]))
            deps = {step.id: step.depends_on for step in definition.steps}
            self.dependencies[(row["id"], row["version"])] = deps
