"""The audit trail's rows: which events the persister records, in which tables, and the
statements that write them (idempotent: a redelivered batch changes nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stepstream.schemas.codec import DecodedEvent
from stepstream.workflows.definition import HUMAN_TYPE
from stepstream.workflows.human_tasks import HUMAN_WORKER_PREFIX

# A rejected start gets a row with its reason, unless the id is taken: a start refused as
# a duplicate names another tenant's (or the same) execution, whose row it must not touch.
INSERT_REJECTED = """
INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, tenant_id,
    user_id, status, error, started_at, finished_at)
VALUES ($1, $2, $3, $4, NULLIF($5, ''), 'rejected', $6, $7, $7)
ON CONFLICT (execution_id) DO NOTHING
"""

UPSERT_EXECUTION = """
INSERT INTO workflow_executions AS e (execution_id, workflow_id, workflow_version, tenant_id,
    user_id, status, input, outputs, failed_step_id, error, started_at, finished_at)
VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12)
ON CONFLICT (execution_id) DO UPDATE SET
    input = COALESCE(e.input, EXCLUDED.input),
    status = CASE WHEN EXCLUDED.status IN ('completed', 'failed', 'cancelled') THEN EXCLUDED.status
                  WHEN e.status = 'rejected' THEN EXCLUDED.status  -- a later start went in
                  ELSE e.status END,
    outputs = COALESCE(EXCLUDED.outputs, e.outputs),
    failed_step_id = CASE WHEN EXCLUDED.status = 'completed' THEN NULL  -- a retry succeeded
                          ELSE COALESCE(EXCLUDED.failed_step_id, e.failed_step_id) END,
    error = CASE WHEN EXCLUDED.status = 'completed' OR e.status = 'rejected' THEN EXCLUDED.error
                 ELSE COALESCE(EXCLUDED.error, e.error) END,
    finished_at = COALESCE(EXCLUDED.finished_at, e.finished_at),
    updated_at = now()
-- An id reused by another tenant after its first execution's retention (the engine has
-- forgotten it) never touches the first tenant's history.
WHERE e.tenant_id = EXCLUDED.tenant_id
"""

# Step rows, the bulk of the trail, are copied into a staging table (COPY: no statement
# per row) and inserted from it in one statement; measured here 13.6 -> 8.7 us per row.
STEP_COLUMNS = (
    "execution_id",
    "step_id",
    "attempt",
    "step_type",
    "status",
    "output",
    "error",
    "worker",
    "started_at",
    "finished_at",
    "tenant_id",
    "released_at",
    "workflow_id",
    "workflow_version",
)
STAGE_STEPS = """
CREATE TEMP TABLE IF NOT EXISTS steps_in ON COMMIT DELETE ROWS AS
SELECT execution_id, step_id, attempt, step_type, status, output, error, worker, started_at,
    finished_at, tenant_id, released_at, workflow_id, workflow_version
FROM workflow_execution_steps WITH NO DATA
"""
# A step row goes in unless its execution's row belongs to another tenant (an id reused
# after retention); a row whose execution is not recorded yet goes in as before.
INSERT_STAGED_STEPS = """
INSERT INTO workflow_execution_steps (execution_id, step_id, attempt, step_type, status,
    output, error, worker, started_at, finished_at, tenant_id, released_at, workflow_id,
    workflow_version)
SELECT s.execution_id, s.step_id, s.attempt, s.step_type, s.status, s.output, s.error,
    s.worker, s.started_at, s.finished_at, s.tenant_id, s.released_at, s.workflow_id,
    s.workflow_version
FROM steps_in s LEFT JOIN workflow_executions e ON e.execution_id = s.execution_id
WHERE e.tenant_id IS NULL OR e.tenant_id = s.tenant_id
ON CONFLICT (execution_id, step_id, attempt) DO NOTHING
"""

INSERT_REPLAY = """
INSERT INTO workflow_replays (request_id, execution_id, action, step_id, requested_by, reason,
    requested_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (request_id) DO NOTHING
"""

# An ignored report, unless its execution's row belongs to another tenant.
INSERT_IGNORED = """
INSERT INTO workflow_ignored_reports (execution_id, step_id, attempt, report, reason, worker,
    decided_at)
SELECT $1, $2, $3, $4, $5, $6, $7
WHERE NOT EXISTS (SELECT 1 FROM workflow_executions e WHERE e.execution_id = $8
                  AND e.tenant_id <> $9)
ON CONFLICT (execution_id, step_id, attempt, report) DO NOTHING
"""

INSERT_CHILD = """
INSERT INTO workflow_children (child_execution_id, parent_execution_id, step_id, attempt,
    depth, tenant_id, workflow_id, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (child_execution_id) DO NOTHING
"""

INSERT_UNMATCHED = """
INSERT INTO workflow_unmatched_events (tenant_id, name, scope, correlation_key, event_id,
    payload, sender, sent_at, expired_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)
ON CONFLICT (tenant_id, name, scope, correlation_key, event_id) DO UPDATE SET
    expired_at = EXCLUDED.expired_at  -- the same event, unmatched again after a resend
"""


INSERT_TASK = """
INSERT INTO workflow_human_tasks (execution_id, step_id, attempt, tenant_id, workflow_id,
    workflow_version, assignee, title, form, opened_at, due_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11)
ON CONFLICT (execution_id, step_id, attempt) DO NOTHING
"""

# A task ends with its attempt's decision, or its step's skip (onTimeout: skip); one
# that is no longer open keeps how it ended first.
CLOSE_TASK = """
UPDATE workflow_human_tasks SET status = $4, answered_by = $5, answer = $6::jsonb,
    closed_at = $7
WHERE execution_id = $1 AND step_id = $2 AND (attempt = $3 OR $3 = 0) AND status = 'open'
"""

# The execution ended while the task was open (cancelled, failed elsewhere).
CLOSE_TASKS_OF = """
UPDATE workflow_human_tasks SET status = 'closed', closed_at = now()
WHERE execution_id = ANY($1::text[]) AND status = 'open'
"""

COUNT_OPEN_TASKS = "SELECT count(*) FROM workflow_human_tasks WHERE status = 'open'"


def when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


Rows = list[tuple[Any, ...]]


@dataclass
class AuditRows:
    """What a batch of events writes, table by table."""

    executions: Rows = field(default_factory=list)
    steps: Rows = field(default_factory=list)
    ignored: Rows = field(default_factory=list)
    replays: Rows = field(default_factory=list)
    rejected: Rows = field(default_factory=list)
    unmatched: Rows = field(default_factory=list)
    tasks: Rows = field(default_factory=list)
    closed_tasks: Rows = field(default_factory=list)
    children: Rows = field(default_factory=list)  # sub-workflows' children, by their parent
    ended: list[str] = field(default_factory=list)  # executions that ended: open tasks close
    completed: list[str] = field(default_factory=list)  # their critical paths are recorded

    def __bool__(self) -> bool:
        tables = (self.executions, self.steps, self.ignored, self.replays, self.rejected)
        more = (self.unmatched, self.tasks, self.closed_tasks, self.children)
        return any(tables) or any(more)

    @property
    def touch_tasks(self) -> bool:
        return bool(self.tasks or self.closed_tasks)


def child_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """A sub-workflow child's link to the parent step that started it."""
    link = r["parent"]
    parent = (link["execution_id"], link["step_id"], link["attempt"], link["depth"])
    return (r["execution_id"], *parent, r["tenant_id"], r["workflow_id"], when(r["timestamp"]))


def rows_for(events: list[DecodedEvent]) -> AuditRows:
    """The rows of the events the audit trail records. Steps come from the coordinator's
    decisions (StepAttemptEnded, StepSkipped), never from workers' reports: a stale or
    duplicate report is not an outcome, and an output that is not JSON never reaches a
    jsonb column (the decision of such a report is a failure)."""
    rows = AuditRows()
    for event in events:
        r = event.record
        if event.name == "StepAttemptEnded":
            if r["outcome"] == "ignored":
                rows.ignored.append(ignored_row(r))
            else:
                rows.steps.append(attempt_row(r))
                if r["step_type"] == HUMAN_TYPE:
                    rows.closed_tasks.append(task_closed_row(r))
            continue
        if event.name == "HumanTaskOpened":
            rows.tasks.append(task_row(r))
            continue
        if event.name == "EventUnmatched":  # of no execution
            rows.unmatched.append(unmatched_row(r))
            continue
        head = (
            r["execution_id"],
            r["workflow_id"],
            r["workflow_version"],
            r["tenant_id"],
            r["user_id"],
        )
        if event.name in ("WorkflowCompleted", "WorkflowFailed", "WorkflowCancelled"):
            rows.ended.append(r["execution_id"])
        if event.name == "WorkflowStarted":
            rows.executions.append(
                (*head, "running", r["input_json"], None, None, None, when(r["timestamp"]), None)
            )
            if r.get("parent"):  # a sub-workflow's child: linked to its parent's step
                rows.children.append(child_row(r))
        elif event.name == "WorkflowCompleted":
            rows.completed.append(r["execution_id"])
            ended = (None, r["outputs_json"], None, None, when(r["started_at"]))
            rows.executions.append((*head, "completed", *ended, when(r["timestamp"])))
        elif event.name == "WorkflowFailed":
            ended = (None, None, r["failed_step_id"], r["error"], when(r["started_at"]))
            rows.executions.append((*head, "failed", *ended, when(r["timestamp"])))
        elif event.name == "WorkflowCancelled":
            cancelled = (None, None, None, r["reason"], when(r["started_at"]), when(r["timestamp"]))
            rows.executions.append((*head, "cancelled", *cancelled))
        elif event.name == "StepSkipped":  # attempt 0: it never ran
            skip = ("skipped", None, r["reason"], "", None, when(r["timestamp"]), r["tenant_id"])
            workflow = (None, r["workflow_id"], r["workflow_version"])
            skipped_step = (r["execution_id"], r["step_id"], 0, r["step_type"])
            rows.steps.append((*skipped_step, *skip, *workflow))
            if r["step_type"] == HUMAN_TYPE:  # by its timeout, if it had opened
                skipped = ("skipped", None, None, when(r["timestamp"]))
                rows.closed_tasks.append((r["execution_id"], r["step_id"], 0, *skipped))
        elif event.name == "WorkflowRejected" and r["code"] != "duplicate_execution_id":
            rows.rejected.append((*head, f"{r['code']}: {r['reason']}", when(r["timestamp"])))
        elif event.name == "ReplayRequested":
            rows.replays.append(
                (
                    r["request_id"],
                    r["execution_id"],
                    r["action"],
                    r["step_id"],
                    r["requested_by"],
                    r["reason"],
                    when(r["timestamp"]),
                )
            )
        # Anything else (clock ticks, retention, a report on an old topic) is not recorded.
    return rows


def attempt_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["execution_id"],
        r["step_id"],
        r["attempt"],
        r["step_type"],
        r["outcome"],
        r["output_json"],
        r["error"],
        r["worker"],
        when(r["started_at"]),
        when(r["finished_at"]),
        r["tenant_id"],
        when(r.get("released_at")),
        r["workflow_id"],
        r["workflow_version"],
    )


def ignored_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["execution_id"],
        r["step_id"],
        r["attempt"],
        r["report"] or "",
        r["error"] or "",
        r["worker"],
        when(r["timestamp"]),
        r["execution_id"],
        r["tenant_id"],
    )


def unmatched_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["tenant_id"],
        r["name"],
        r["scope"],
        r["correlation_key"],
        r["sent_event_id"],
        r["payload_json"],
        r["sender"],
        when(r["sent_at"]),
        when(r["expires_at"]),
    )


def task_row(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["execution_id"],
        r["step_id"],
        r["attempt"],
        r["tenant_id"],
        r["workflow_id"],
        r["workflow_version"],
        r["assignee"],
        r["title"],
        r["form_json"],
        when(r["timestamp"]),
        when(r["due_at"]),
    )


def task_closed_row(r: dict[str, Any]) -> tuple[Any, ...]:
    """How a task's attempt ended: answered (by whom, with what), or by its timeout."""
    worker = r["worker"] or ""
    answered = r["outcome"] == "completed" and worker.startswith(HUMAN_WORKER_PREFIX)
    if answered:
        status, by, answer = "answered", worker.removeprefix(HUMAN_WORKER_PREFIX), r["output_json"]
    else:
        status = "timed_out" if r["outcome"] in ("completed", "timed_out") else str(r["outcome"])
        by, answer = None, None
    finished = when(r["finished_at"]) or when(r["timestamp"])
    return (r["execution_id"], r["step_id"], r["attempt"], status, by, answer, finished)
