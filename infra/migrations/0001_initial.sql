-- Domain data of the property-maintenance workflows, and the audit trail of executions.

CREATE TABLE properties (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    address     text NOT NULL DEFAULT '',
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL
);

CREATE TABLE assets (
    id          bigserial PRIMARY KEY,
    property_id bigint NOT NULL REFERENCES properties (id),
    name        text NOT NULL,
    category    text NOT NULL
);

CREATE TABLE technicians (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    skills      text[] NOT NULL DEFAULT '{}',
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    capacity    integer NOT NULL CHECK (capacity >= 0),
    -- Open assignments. The CHECK makes over-assignment impossible, whatever the caller.
    workload    integer NOT NULL DEFAULT 0 CHECK (workload >= 0 AND workload <= capacity)
);

CREATE TABLE maintenance_requests (
    id              bigserial PRIMARY KEY,
    tenant_id       text NOT NULL,
    property_id     bigint NOT NULL REFERENCES properties (id),
    asset_id        bigint REFERENCES assets (id),
    title           text NOT NULL,
    description     text NOT NULL DEFAULT '',
    priority        text CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')),
    priority_source text,
    priority_reason text,
    status          text NOT NULL DEFAULT 'open',
    technician_id   bigint REFERENCES technicians (id),
    idempotency_key text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- An outbox: a notification is written once per idempotency key, then published.
CREATE TABLE notifications (
    id              bigserial PRIMARY KEY,
    request_id      bigint REFERENCES maintenance_requests (id),
    channel         text NOT NULL,
    recipient       text NOT NULL,
    body            text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);

CREATE TABLE workflow_definitions (
    id            text NOT NULL,
    version       integer NOT NULL,
    body          jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);

CREATE TABLE workflow_executions (
    execution_id     text PRIMARY KEY,
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    user_id          text,
    status           text NOT NULL,
    input            jsonb,
    outputs          jsonb,
    failed_step_id   text,
    error            text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_executions_workflow_status ON workflow_executions (workflow_id, status);
CREATE INDEX workflow_executions_started_at ON workflow_executions (started_at);
CREATE INDEX workflow_executions_user ON workflow_executions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX workflow_executions_status_created ON workflow_executions (status, created_at);

CREATE TABLE workflow_execution_steps (
    execution_id  text NOT NULL,
    step_id       text NOT NULL,
    attempt       integer NOT NULL,
    step_type     text NOT NULL,
    status        text NOT NULL,
    output        jsonb,
    error         text,
    worker        text,
    started_at    timestamptz,
    finished_at   timestamptz,
    PRIMARY KEY (execution_id, step_id, attempt)
);
CREATE INDEX workflow_execution_steps_execution ON workflow_execution_steps (execution_id);
