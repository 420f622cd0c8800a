-- Events from outside that no wait took within their time to live (EventUnmatched):
-- never dropped silently. `stepstream events --unmatched` lists them.

CREATE TABLE workflow_unmatched_events (
    tenant_id        text NOT NULL,
    name             text NOT NULL,
    scope            text NOT NULL,  -- 'key' (a correlation key) or 'execution' (a signal)
    correlation_key  text NOT NULL,
    event_id         text NOT NULL,  -- the producer's
    payload          jsonb NOT NULL,
    sender           text,
    sent_at          timestamptz NOT NULL,
    expired_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name, scope, correlation_key, event_id)
);

CREATE INDEX workflow_unmatched_events_expired ON workflow_unmatched_events (expired_at DESC);
