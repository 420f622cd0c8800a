-- Templates (`kind: template`): parametrised blocks of steps. `stepstream register`
-- keeps them here and expands a workflow's `use:` steps from them when it registers the
-- workflow; workers never read them (a registered workflow carries its expanded steps).

CREATE TABLE workflow_templates (
    id             text NOT NULL,
    version        integer NOT NULL,
    body           jsonb NOT NULL,  -- the template as written
    registered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);
