-- Operators' replay requests (resume, retry, rerun-from): who asked for what, and why.

CREATE TABLE workflow_replays (
    request_id   text PRIMARY KEY,
    execution_id text NOT NULL,
    action       text NOT NULL,
    step_id      text,
    requested_by text NOT NULL DEFAULT '',
    reason       text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL
);

CREATE INDEX workflow_replays_by_execution ON workflow_replays (execution_id, requested_at);
