-- Sub-workflows: one row per child execution a parent's step started, written from the
-- child's WorkflowStarted (which names its parent). `describe` and the console link
-- parent and child both ways through it.

CREATE TABLE workflow_children (
    child_execution_id   text PRIMARY KEY,
    parent_execution_id  text NOT NULL,
    step_id              text NOT NULL,
    attempt              integer NOT NULL,
    depth                integer NOT NULL,
    tenant_id            text NOT NULL,
    workflow_id          text NOT NULL,
    started_at           timestamptz NOT NULL
);

CREATE INDEX workflow_children_parent ON workflow_children (parent_execution_id, started_at);
