-- The console's users, their sessions and failed sign-ins. A user has one role (viewer,
-- operator, admin) and sees the tenants listed, or every tenant (tenants IS NULL).

CREATE TABLE console_users (
    name          text PRIMARY KEY,
    password_hash text NOT NULL,  -- Argon2id, with its parameters and salt
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    tenants       text[],         -- NULL: every tenant
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- A session is found by the SHA-256 of its cookie's value: the table alone opens none.
CREATE TABLE console_sessions (
    token_hash  text PRIMARY KEY,
    user_name   text NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_user ON console_sessions (user_name);

-- Failed sign-ins, by the name tried and the address it came from: too many in a window
-- and sign-in is refused for both, whatever the password.
CREATE TABLE console_sign_in_failures (
    user_name  text NOT NULL,
    remote     text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sign_in_failures_user ON console_sign_in_failures (user_name, failed_at);
CREATE INDEX console_sign_in_failures_remote ON console_sign_in_failures (remote, failed_at);
