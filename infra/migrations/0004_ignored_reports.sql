-- Reports the coordinator did not apply (a stale attempt, a late report of an attempt
-- that timed out, one of an execution that had ended), with its reason: what `describe`
-- shows beside the attempts, never as one. workflow_execution_steps holds only the
-- coordinator's outcomes (StepAttemptEnded), and `timed_out` is one of them.

CREATE TABLE workflow_ignored_reports (
    execution_id  text NOT NULL,
    step_id       text NOT NULL,
    attempt       integer NOT NULL,
    report        text NOT NULL,  -- 'completed' (a StepCompleted) or 'failed' (a StepFailed)
    reason        text NOT NULL,
    worker        text,
    decided_at    timestamptz NOT NULL,
    PRIMARY KEY (execution_id, step_id, attempt, report)
);
