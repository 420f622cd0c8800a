-- Execution analytics: hourly rollups kept by the database itself.
--
-- Why rollups, and why triggers: the questions (outcomes, duration percentiles, step
-- failure rates, waits, the critical path) are asked over ranges of days on tables of
-- tens of millions of rows. Scanning the attempts for each question grows with history;
-- the rollups grow with hours x steps x buckets. Triggers (per statement with transition
-- tables where a batch is one statement) keep them in the writer's own transaction,
-- whoever the writer is: a batch the
-- persister writes again after a redelivery inserts no new attempt row (ON CONFLICT DO
-- NOTHING), so it counts nothing twice, and an execution whose status changes (failed,
-- then retried to completion) moves from one count to the other.
--
-- Durations are kept as histograms: bucket b holds values in [1.1^b, 1.1^(b+1)) ms
-- (-1: none), so a percentile read from them is within 5% of the exact one, and merging
-- hours, tenants and versions is a sum.

ALTER TABLE workflow_execution_steps
    ADD COLUMN released_at      timestamptz,  -- the coordinator released the attempt
    ADD COLUMN workflow_id      text,
    ADD COLUMN workflow_version integer,
    ADD COLUMN tenant_id        text;

CREATE FUNCTION analytics_bucket(ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms IS NULL THEN -1 ELSE floor(ln(greatest(ms, 1)) / ln(1.1))::integer END
$$;

CREATE FUNCTION analytics_ms(since timestamptz, until timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT extract(epoch FROM until - since) * 1000
$$;

-- A fan-out's instances ("notify[3]") count as their step.
CREATE FUNCTION analytics_step(step_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(step_id, '\[[0-9]+\]$', '')
$$;

-- Executions by the hour they started, outcome and duration bucket.
CREATE TABLE analytics_executions (
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    hour             timestamptz NOT NULL,
    status           text NOT NULL,
    bucket           integer NOT NULL,  -- of finished_at - started_at; -1 while running
    executions       bigint NOT NULL,
    PRIMARY KEY (workflow_id, hour, workflow_version, tenant_id, status, bucket)
);

-- Step attempts by the hour they ended: how many, how they ended, first or a retry.
CREATE TABLE analytics_step_attempts (
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    step_id          text NOT NULL,
    hour             timestamptz NOT NULL,
    status           text NOT NULL,
    retry            boolean NOT NULL,  -- an attempt after the first
    attempts         bigint NOT NULL,
    PRIMARY KEY (workflow_id, hour, workflow_version, tenant_id, step_id, status, retry)
);

-- Histograms of step attempts: `duration` (started to finished, completed attempts) and
-- `wait` (released to started: waiting for a worker).
CREATE TABLE analytics_step_times (
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    step_id          text NOT NULL,
    hour             timestamptz NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('duration', 'wait')),
    bucket           integer NOT NULL,
    attempts         bigint NOT NULL,
    PRIMARY KEY (workflow_id, hour, kind, workflow_version, tenant_id, step_id, bucket)
);

-- The steps on each completed execution's critical path (the chain of dependencies that
-- ended last), written by the persister when the execution completes; and their count.
CREATE TABLE workflow_critical_steps (
    execution_id     text NOT NULL,
    step_id          text NOT NULL,
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    finished_at      timestamptz NOT NULL,  -- the execution's
    PRIMARY KEY (execution_id, step_id)
);

CREATE TABLE analytics_step_critical (
    workflow_id      text NOT NULL,
    workflow_version integer NOT NULL,
    tenant_id        text NOT NULL,
    step_id          text NOT NULL,
    hour             timestamptz NOT NULL,
    executions       bigint NOT NULL,
    PRIMARY KEY (workflow_id, hour, workflow_version, tenant_id, step_id)
);

-- The workers' counters (caches, rate limits) sampled over time; the console charts the
-- increase between samples.
CREATE TABLE metric_samples (
    worker      text NOT NULL,
    sampled_at  timestamptz NOT NULL,
    name        text NOT NULL,  -- e.g. cache.ai.hit, rate_limit.tenant.rejected
    value       double precision NOT NULL,
    PRIMARY KEY (sampled_at, worker, name)
);

-- Executions are written one statement each (the persister's upsert runs per event), so
-- their trigger is per row, and an update that changes nothing counted (a redelivered
-- event) does not run it at all (the WHEN of the trigger below).
CREATE FUNCTION analytics_count_execution() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        UPDATE analytics_executions SET executions = executions - 1
        WHERE workflow_id = OLD.workflow_id AND hour = date_trunc('hour', OLD.started_at, 'UTC')
          AND workflow_version = OLD.workflow_version AND tenant_id = OLD.tenant_id
          AND status = OLD.status
          AND bucket = analytics_bucket(analytics_ms(OLD.started_at, OLD.finished_at));
    END IF;
    INSERT INTO analytics_executions AS a
    VALUES (NEW.workflow_id, NEW.workflow_version, NEW.tenant_id,
            date_trunc('hour', NEW.started_at, 'UTC'), NEW.status,
            analytics_bucket(analytics_ms(NEW.started_at, NEW.finished_at)), 1)
    ON CONFLICT (workflow_id, hour, workflow_version, tenant_id, status, bucket)
    DO UPDATE SET executions = a.executions + 1;
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_count_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_step_attempts AS a
    SELECT workflow_id, workflow_version, tenant_id, analytics_step(step_id),
           date_trunc('hour', finished_at, 'UTC'), status, attempt > 1, count(*)
    FROM new_rows WHERE attempt > 0 AND workflow_id IS NOT NULL AND finished_at IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (workflow_id, hour, workflow_version, tenant_id, step_id, status, retry)
    DO UPDATE SET attempts = a.attempts + EXCLUDED.attempts;

    INSERT INTO analytics_step_times AS a
    SELECT workflow_id, workflow_version, tenant_id, analytics_step(step_id),
           date_trunc('hour', finished_at, 'UTC'), t.kind, analytics_bucket(t.ms), count(*)
    FROM new_rows,
         LATERAL (VALUES ('duration', CASE WHEN status = 'completed'
                                           THEN analytics_ms(started_at, finished_at) END),
                         ('wait', analytics_ms(released_at, started_at))) AS t (kind, ms)
    WHERE attempt > 0 AND workflow_id IS NOT NULL AND finished_at IS NOT NULL
      AND t.ms IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (workflow_id, hour, kind, workflow_version, tenant_id, step_id, bucket)
    DO UPDATE SET attempts = a.attempts + EXCLUDED.attempts;
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_count_critical() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_step_critical AS a
    SELECT workflow_id, workflow_version, tenant_id, step_id,
           date_trunc('hour', finished_at, 'UTC'), count(*)
    FROM new_rows
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (workflow_id, hour, workflow_version, tenant_id, step_id)
    DO UPDATE SET executions = a.executions + EXCLUDED.executions;
    RETURN NULL;
END $$;

-- What is already recorded is counted once, by the triggers' own statements: its rows are
-- moved out and back in (nothing refers to these tables), then the triggers count what
-- comes next.
UPDATE workflow_execution_steps s
SET workflow_id = e.workflow_id, workflow_version = e.workflow_version, tenant_id = e.tenant_id
FROM workflow_executions e WHERE e.execution_id = s.execution_id;

CREATE TRIGGER analytics_executions_inserted AFTER INSERT ON workflow_executions
    FOR EACH ROW EXECUTE FUNCTION analytics_count_execution();
CREATE TRIGGER analytics_executions_updated AFTER UPDATE ON workflow_executions
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.started_at IS DISTINCT FROM NEW.started_at
          OR OLD.finished_at IS DISTINCT FROM NEW.finished_at
          OR OLD.workflow_version IS DISTINCT FROM NEW.workflow_version)
    EXECUTE FUNCTION analytics_count_execution();
CREATE TRIGGER analytics_steps_inserted AFTER INSERT ON workflow_execution_steps
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_count_steps();
CREATE TRIGGER analytics_critical_inserted AFTER INSERT ON workflow_critical_steps
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_count_critical();

CREATE TEMP TABLE recorded_executions ON COMMIT DROP AS SELECT * FROM workflow_executions;
DELETE FROM workflow_executions;
INSERT INTO workflow_executions SELECT * FROM recorded_executions;
CREATE TEMP TABLE recorded_steps ON COMMIT DROP AS SELECT * FROM workflow_execution_steps;
DELETE FROM workflow_execution_steps;
INSERT INTO workflow_execution_steps SELECT * FROM recorded_steps;
