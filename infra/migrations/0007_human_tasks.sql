-- Human tasks (steps with `human:`): one row per attempt of such a step, from the
-- coordinator's HumanTaskOpened, closed from its decisions (the answer, a timeout, the
-- execution's end). `stepstream tasks` and the console list the open ones.

CREATE TABLE workflow_human_tasks (
    execution_id      text NOT NULL,
    step_id           text NOT NULL,
    attempt           integer NOT NULL,
    tenant_id         text NOT NULL,
    workflow_id       text NOT NULL,
    workflow_version  integer NOT NULL,
    assignee          text,           -- NULL: anyone of the tenant
    title             text,
    form              jsonb NOT NULL, -- the JSON Schema the answer must match
    opened_at         timestamptz NOT NULL,
    due_at            timestamptz,
    -- open, answered, timed_out (answered by its timeout), failed, skipped, closed (the
    -- execution ended first)
    status            text NOT NULL DEFAULT 'open',
    answered_by       text,
    answer            jsonb,
    closed_at         timestamptz,
    PRIMARY KEY (execution_id, step_id, attempt)
);

CREATE INDEX workflow_human_tasks_open ON workflow_human_tasks (tenant_id, assignee, opened_at)
    WHERE status = 'open';
