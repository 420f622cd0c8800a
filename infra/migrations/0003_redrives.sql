-- Dead letters an operator re-drove: a second `dead-letters --redrive` skips them (and
-- says so) unless asked to send them again.

CREATE TABLE dead_letter_redrives (
    letter_id   text PRIMARY KEY,  -- <source topic>/<partition>/<offset>
    redriven_at timestamptz NOT NULL DEFAULT now()
);
