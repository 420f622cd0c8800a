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

# One statement a batch: its trigger counts the batch's paths at once.
INSERT_CRITICAL = """
INSERT INTO workflow_critical_steps (execution_id, step_id, workflow_id, workflow_version,
    tenant_id, finished_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[],
    $6::timestamptz[])
ON CONFLICT (execution_id, step_id) DO NOTHING
"""

Dependencies = dict[str, tuple[str, ...]]


class CriticalPaths:
    """Keeps each definition version's dependencies (versions never change)."""

    def __init__(self) -> None:
        self.dependencies: dict[tuple[str, int], Dependencies] = {}
        self.last_steps: dict[tuple[str, int], frozenset[str]] = {}  # no step depends on them

    async def record(
        self,
        connection: asyncpg.Connection,
        completed: Iterable[str],
        steps: Iterable[tuple[str, str, str | None, int | None]],
    ) -> int:
        """Records the paths of the executions that completed with every step recorded,
        of those a batch may have finished: those it completed, and those whose last
        steps (`steps`: execution, step, workflow, version) it brings. Returns how many
        executions had one."""
        steps = list(steps)
        await self._load(connection, {(w, v) for _, _, w, v in steps if w and v is not None})
        candidates = set(completed)
        for execution_id, step_id, workflow, version in steps:
            last = self.last_steps.get((workflow or "", version or 0))
            if last is None or step_id.partition("[")[0] in last:
                candidates.add(execution_id)
        if not candidates:
            return 0
        rows = await connection.fetch(FINISHES, sorted(candidates))
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
            await connection.execute(
                INSERT_CRITICAL, *(list(c) for c in zip(*records, strict=True))
            )
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
            needed = {d for step in definition.steps for d in step.depends_on}
            self.dependencies[(row["id"], row["version"])] = deps
            self.last_steps[(row["id"], row["version"])] = frozenset(deps) - needed
